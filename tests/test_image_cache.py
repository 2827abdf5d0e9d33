"""The decode-once image cache: one decode per dataset, reused by subsets, shards and later runs, bounded in memory."""

import io

import datasets
import numpy as np
import pytest
from PIL import Image as PILImage

from svp_hf.data import image_cache
from svp_hf.errors import SVPRuntimeError


def _png(array):
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, size=(50, 6, 5, 3), dtype=np.uint8)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": _png(a), "path": None} for a in arrays], "label": list(range(50))}, features=features
    )
    image_cache.clear()
    yield ds, arrays
    image_cache.clear()


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    original = image_cache.decode_one

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(image_cache, "decode_one", counting)
    return calls


def test_every_image_is_decoded_once_and_subsets_and_shards_reuse_it(images, count_decodes):
    ds, arrays = images
    decoded = image_cache.decode_images(ds, "img", "RGB", (6, 5))
    np.testing.assert_array_equal(decoded.pixels, arrays)
    assert len(count_decodes) == 50 and decoded.bad_rows == []
    picked = [40, 2, 2, 33, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]
    subset = image_cache.decode_images(ds.select(picked), "img", "RGB", (6, 5))
    shard = image_cache.decode_images(ds.select(range(10, 30)), "img", "RGB", (6, 5))
    with_column = image_cache.decode_images(ds.add_column("x", list(range(50))), "img", "RGB", (6, 5))
    np.testing.assert_array_equal(subset.pixels[np.arange(len(picked))], arrays[picked])
    np.testing.assert_array_equal(np.asarray(shard.pixels), arrays[10:30])
    np.testing.assert_array_equal(with_column.pixels, arrays)
    assert len(count_decodes) == 50  # nothing decoded again


def test_a_file_backed_dataset_is_decoded_once_across_runs(images, tmp_path, count_decodes):
    ds, arrays = images
    ds.to_parquet(str(tmp_path / "train.parquet"))

    def load():
        return datasets.load_dataset(
            "parquet", data_files=str(tmp_path / "train.parquet"), split="train", cache_dir=str(tmp_path / "cache")
        )

    first = image_cache.decode_images(load(), "img", "RGB", (6, 5))
    assert not first.from_disk_cache and len(count_decodes) == 50
    image_cache.clear()  # a new process: nothing in memory
    second = image_cache.decode_images(load(), "img", "RGB", (6, 5))
    assert second.from_disk_cache and second.memory_mapped
    assert len(count_decodes) == 50
    np.testing.assert_array_equal(second.pixels, arrays)


def test_a_cache_over_the_memory_bound_is_memory_mapped(images, monkeypatch):
    ds, arrays = images
    monkeypatch.setattr(image_cache, "MAX_MEMORY", 1000)
    decoded = image_cache.decode_images(ds, "img", "RGB", (6, 5))
    assert decoded.memory_mapped and isinstance(decoded.pixels, np.memmap)
    np.testing.assert_array_equal(decoded.pixels, arrays)


def test_images_of_another_size_are_resized_and_grayscale_keeps_one_channel(images):
    ds, arrays = images
    decoded = image_cache.decode_images(ds, "img", "L", (4, 4))
    assert decoded.pixels.shape == (50, 4, 4, 1)


def test_rows_that_cannot_be_decoded_are_found_and_named(images):
    ds, _ = images
    broken = (
        ds.cast_column("img", datasets.Image(decode=False))
        .map(lambda row, i: {"img": {"bytes": b"garbage", "path": None}} if i in (4, 9) else row, with_indices=True)
        .cast_column("img", datasets.Image())
    )
    decoded = image_cache.decode_images(broken, "img", "RGB", (6, 5))
    assert decoded.bad_rows == [4, 9]
    assert not decoded.pixels[4].any()
    with pytest.raises(SVPRuntimeError, match=r"2 image\(s\) in column 'img'.*row\(s\) 4, 9"):
        image_cache.check_decodable(decoded, "img")
    subset = image_cache.decode_images(broken.select([9, 0, 1]), "img", "RGB", (6, 5))
    assert subset.bad_rows == [0]


def _decode_in_another_process(parquet, cache_dir, start, results):
    """One process of :func:`test_processes_decoding_one_file_backed_dataset_at_once_write_its_cache_once`: slowed
    decoding, started with the others, reports what it read and whether it decoded."""
    import time

    from svp_hf.data import image_cache

    original = image_cache.decode_one

    def slow(*args, **kwargs):
        time.sleep(0.002)
        return original(*args, **kwargs)

    image_cache.decode_one = slow
    ds = datasets.load_dataset("parquet", data_files=parquet, split="train", cache_dir=cache_dir)
    start.wait()
    decoded = image_cache.decode_images(ds, "img", "RGB", (6, 5))
    results.put((np.asarray(decoded.pixels).tobytes(), decoded.from_disk_cache))


def test_processes_decoding_one_file_backed_dataset_at_once_write_its_cache_once(images, tmp_path):
    # Three processes (the ranks of one launch, or separate runs on one datasets cache) decode the same dataset at once.
    import multiprocessing

    ds, arrays = images
    ds.to_parquet(str(tmp_path / "train.parquet"))
    cache_dir = str(tmp_path / "cache")
    datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train", cache_dir=cache_dir)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(3), context.Queue()
    procs = [
        context.Process(
            target=_decode_in_another_process, args=(str(tmp_path / "train.parquet"), cache_dir, start, results)
        )
        for _ in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:  # each result is a few kB: queued without blocking the process's exit
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    read = [results.get(timeout=10) for _ in procs]
    assert all(pixels == arrays.tobytes() for pixels, _ in read)
    assert sorted(from_disk for _, from_disk in read) == [False, True, True]  # one process decoded, two read its file
    files = sorted(p.name for p in (tmp_path / "cache").rglob("svp_images-*"))
    assert [f.rsplit("-", 1)[-1] for f in files if ".tmp" in f or f.endswith("npy")] == ["6x5.bad.npy", "6x5.npy"]
