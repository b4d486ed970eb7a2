"""Minimal safetensors reader/writer on numpy (the `safetensors` package is not needed).

Format: an 8-byte little-endian u64 header length N, N bytes of JSON header
{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
 "__metadata__": {str: str}},
then the data buffer; offsets are relative to the start of the data buffer.

    tensors, metadata = load("model.safetensors")
    save("out.safetensors", {"w": np.zeros((2, 3), np.float32)}, metadata={"format": "pt"})
"""

import json
import os
import struct
import tempfile

import numpy as np

# safetensors dtype name -> little-endian numpy dtype. BF16 has no numpy dtype: it is read as
# uint16 and widened to float32 (see _decode).
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {dt: name for name, dt in _DTYPES.items() if name != "BF16"}


def _decode(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    arr = np.frombuffer(raw, dtype=_DTYPES[dtype])
    if dtype == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(shape).copy()


def load(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads a safetensors file: (name -> array in native byte order, metadata).

    BF16 tensors come back as float32. Every offset and size is checked; problems raise ValueError
    naming the file and the tensor.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n :]
    tensors = {}
    for name, entry in header.items():
        where = f"{path}: tensor '{name}'"
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPES:
            raise ValueError(f"{where}: unsupported dtype {dtype}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype].itemsize
        if not 0 <= begin <= end <= len(data) or end - begin != nbytes:
            raise ValueError(
                f"{where}: data_offsets [{begin}, {end}] do not fit shape {shape} of {dtype} "
                f"in a data buffer of {len(data)} bytes"
            )
        tensors[name] = _decode(data[begin:end], dtype, shape)
    return tensors, metadata


def save(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Writes `tensors` with their own dtypes (float64/32/16, int64/32/16/8, uint8, bool).

    Header keys are sorted, the header is padded with spaces to a multiple of 8 bytes, and the file
    is written atomically (a temporary file in the same directory, then os.replace).
    """
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt not in _NAMES:
            raise TypeError(f"tensor '{name}': dtype {arr.dtype} cannot be stored")
        raw = np.ascontiguousarray(arr, dtype=dt).tobytes()
        header[name] = {
            "dtype": _NAMES[dt],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".safetensors")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would otherwise survive the rename
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for raw in chunks:
                f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
