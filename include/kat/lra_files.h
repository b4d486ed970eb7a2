// The released data of three LRA tasks (reference/lra.md), read as kat sequences; kat downloads
// nothing, every error says where the files come from.
//   image:     CIFAR-10, binary version, as grayscale pixel sequences (1024 tokens, 10 classes).
//   text:      IMDb reviews (aclImdb), bytes as tokens, truncated to 1000 bytes (2 classes).
//   retrieval: AAN citation pairs (LRA's new_aan_pairs.*.tsv), two documents of up to 4000 bytes
//              joined by a NUL byte into one sequence (2 classes).
#pragma once

#include <cstdint>
#include <string>

#include "kat/data.h"
#include "kat/lra.h"

namespace kat {

// CIFAR-10's binary version (cifar-10-binary.tar.gz from
// https://www.cs.toronto.edu/~kriz/cifar.html unpacks to cifar-10-batches-bin/): data_batch_1.bin
// .. data_batch_5.bin and test_batch.bin, each a run of 3073-byte records: the label (0-9), then
// the red, green and blue planes of a 32x32 image, each row-major.
constexpr int kCifarRecordBytes = 1 + 3 * 32 * 32;

// True when dir, or dir/cifar-10-batches-bin, holds any of those files.
bool has_cifar10(const std::string& dir);

// One split as 32x32 grayscale images (train: the five data batches in order, test: test_batch).
// A missing file, a file that is not whole records or a label over 9 is an error naming the file
// (and the record).
ImageDataset load_cifar10_gray(const std::string& dir, Split split);

// LRA's grayscale (tf.image.rgb_to_grayscale on uint8): to float in [0, 1] (x / 255), the weighted
// sum 0.2989 R + 0.5870 G + 0.1140 B, back to uint8 as TensorFlow converts floats to integers:
// times 255.5, rounded toward zero. So it is trunc(1.00196 * (0.2989 R + 0.5870 G + 0.1140 B)), in
// float32 like TensorFlow.
uint8_t lra_gray(uint8_t r, uint8_t g, uint8_t b);

// IMDb's aclImdb directory (aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/):
// train/{pos,neg}/*.txt and test/{pos,neg}/*.txt, one review per file, files taken in name order.
// Bytes are tokens (vocab 256), pos = 1 and neg = 0; like LRA's code, a review is cut to its first
// max_bytes bytes (the paper says 4000, the code uses 1000). Validation: a tenth of the training
// reviews, drawn with the seed; the rest train; test: the test reviews (neg, then pos).
constexpr int64_t kImdbMaxBytes = 1000;
LraData load_imdb(const std::string& dir, uint64_t seed, int64_t max_bytes = kImdbMaxBytes);

// LRA's AAN retrieval pairs (the lra_release/lra_release/tsv_data directory of
// https://storage.googleapis.com/long-range-arena/lra_release.gz):
// new_aan_pairs.{train,eval,test}.tsv, lines "label<TAB>id1<TAB>id2<TAB>text1<TAB>text2", label 0
// or 1 (also written "0.0" / "1.0"). A pair becomes one sequence: text1 cut to max_bytes, a NUL
// byte, text2 cut to max_bytes (LRA's model encodes the two texts apart; kat's classifier reads one
// sequence). A wrong field count, a label other than 0 or 1 and a NUL byte inside a text are errors
// naming the file and line.
constexpr int64_t kAanMaxBytes = 4000;
SequenceDataset read_aan_tsv(const std::string& path, int64_t max_bytes = kAanMaxBytes);
LraData load_aan(const std::string& dir, int64_t max_bytes = kAanMaxBytes);

}  // namespace kat
