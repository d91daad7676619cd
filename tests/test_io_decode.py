"""imgtag.io.decode: real files written with Pillow (and the tests/data photos), every odd case."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from imgtag.io.decode import DecodeError, load_pil, load_pil_from_bytes, load_resized, load_resized_from_bytes, resize_image


def rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def _photo_rgb(photo) -> Image.Image:
    with Image.open(photo) as im:
        return im.convert("RGB")


# ----------------------------------------------------------------------------- good files


def test_photos_decode_to_rgb(photos):
    for p in photos:
        im = load_pil(p)
        with Image.open(p) as ref:
            assert im.mode == "RGB" and im.size == ref.size
            assert np.array_equal(np.asarray(im), np.asarray(ref.convert("RGB")))


def test_from_bytes_matches_file(photo):
    a = np.asarray(load_pil(photo))
    b = np.asarray(load_pil_from_bytes(photo.read_bytes(), photo.name))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"),
                                     ("GIF", "gif")])
def test_other_formats(tmp_path, photo, fmt, ext):
    src = _photo_rgb(photo)
    p = tmp_path / f"x.{ext}"
    src.save(p, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    im = load_pil(p)
    assert im.mode == "RGB" and im.size == src.size
    if fmt != "GIF":  # GIF is palettised
        assert np.array_equal(np.asarray(im), np.asarray(src))


def test_unicode_file_name(tmp_path, photo):
    p = tmp_path / "fête 日本.jpg"
    p.write_bytes(photo.read_bytes())
    assert load_pil(p).size == (128, 96)
    assert load_resized(p, 32).shape == (32, 32, 3)


def test_grayscale_becomes_rgb(tmp_path, photo):
    p = tmp_path / "gray.jpg"
    _photo_rgb(photo).convert("L").save(p, quality=90)
    a = np.asarray(load_pil(p))
    assert a.shape == (96, 128, 3)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])


def test_cmyk_jpeg(tmp_path, photo):
    src = _photo_rgb(photo)
    p = tmp_path / "cmyk.jpg"
    src.convert("CMYK").save(p, quality=95)
    with Image.open(p) as raw:
        assert raw.mode == "CMYK"
    im = load_pil(p)
    assert im.mode == "RGB"
    assert np.abs(rgb(im) - rgb(src)).mean() < 8  # naive CMYK round trip + JPEG loss, not inverted


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 256 * 16).round().astype(np.uint16).reshape(16, 256)
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)
    with Image.open(p) as raw:
        assert raw.mode.startswith("I")
    a = np.asarray(load_pil(p))[..., 0]
    assert a.min() == 0 and a.max() == 255
    assert 120 < a.mean() < 135  # clipping would give a mean near 255
    assert (np.diff(a.astype(int), axis=1) >= 0).all()  # monotone ramp
    expected = np.round(ramp.astype(np.float64) * 255 / 65535)
    assert np.abs(a - expected).max() <= 1


def test_int32_tiff_taken_as_16bit(tmp_path):
    arr = np.full((8, 8), 32768, np.int32)
    p = tmp_path / "i.tif"
    Image.fromarray(arr, mode="I").save(p)
    assert np.asarray(load_pil(p))[0, 0].tolist() == [128, 128, 128]


def test_float_tiff(tmp_path):
    arr = np.full((4, 4), 0.5, np.float32)
    p = tmp_path / "f.tif"
    Image.fromarray(arr, mode="F").save(p)
    assert np.asarray(load_pil(p))[0, 0].tolist() == [128, 128, 128]


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((4, 3, 4), np.uint8)
    a[0] = (255, 0, 0, 255)   # opaque red
    a[1] = (255, 0, 0, 0)     # transparent: white
    a[2] = (0, 0, 0, 128)     # half-transparent black: mid grey
    a[3] = (0, 0, 255, 255)
    p = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(p)
    out = np.asarray(load_pil(p))
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[1, 0].tolist() == [255, 255, 255]
    assert np.abs(out[2, 0].astype(int) - 127).max() <= 1
    assert out[3, 0].tolist() == [0, 0, 255]


def test_la_png(tmp_path):
    a = np.array([[[0, 255], [0, 0]]], np.uint8)  # opaque black, transparent black
    p = tmp_path / "la.png"
    Image.fromarray(a, "LA").save(p)
    assert np.asarray(load_pil(p))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_palette_png_with_transparency(tmp_path):
    im = Image.new("P", (4, 1))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    im.putdata([0, 1, 0, 1])
    p = tmp_path / "pal.png"
    im.save(p, transparency=0)
    with Image.open(p) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    assert np.asarray(load_pil(p))[0].tolist() == [[255, 255, 255], [255, 0, 0]] * 2


def test_rgb_png_with_transparent_colour(tmp_path):
    a = np.zeros((1, 2, 3), np.uint8)
    a[0, 1] = (10, 20, 30)
    p = tmp_path / "trns.png"
    Image.fromarray(a).save(p, transparency=(0, 0, 0))
    assert np.asarray(load_pil(p))[0].tolist() == [[255, 255, 255], [10, 20, 30]]


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(p) as raw:
        assert raw.n_frames == 3
    assert np.asarray(load_pil(p))[4, 4].tolist() == [255, 0, 0]
    assert load_resized(p, 4)[2, 2].tolist() == [255, 0, 0]


def _save_with_orientation(src: Image.Image, path, orientation: int):
    exif = Image.Exif()
    exif[0x0112] = orientation
    src.save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_exif_transpose(tmp_path, photo, orientation):
    p = tmp_path / f"o{orientation}.jpg"
    _save_with_orientation(_photo_rgb(photo), p, orientation)
    with Image.open(p) as raw:
        ref = ImageOps.exif_transpose(raw).convert("RGB")
    im = load_pil(p)
    assert im.size == ref.size == ((96, 128) if orientation >= 5 else (128, 96))
    assert np.array_equal(np.asarray(im), np.asarray(ref))


def test_exif_orientation_6_swaps_width_and_height(tmp_path, photo):
    p = tmp_path / "rot.jpg"
    _save_with_orientation(_photo_rgb(photo), p, 6)
    im = load_pil(p)
    assert im.size == (96, 128)
    assert ImageOps.exif_transpose(im).size == (96, 128)  # not rotated a second time


def test_xmp_orientation(tmp_path, photo):
    p = tmp_path / "xmprot.png"
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
           'syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="8"/>'
           '</rdf:RDF></x:xmpmeta>')
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    _photo_rgb(photo).save(p, pnginfo=info)
    with Image.open(p) as raw:
        ref = ImageOps.exif_transpose(raw).convert("RGB")
    assert ref.size == (96, 128)
    assert np.array_equal(np.asarray(load_pil(p)), np.asarray(ref))
    assert load_resized(p, (20, 10)).shape == (20, 10, 3)


def test_broken_exif_is_ignored(tmp_path, photo):
    p = tmp_path / "badexif.jpg"
    _photo_rgb(photo).save(p, exif=b"Exif\x00\x00garbage-not-tiff")
    assert load_pil(p).size == (128, 96)


# ----------------------------------------------------------------------------- load_resized


def test_load_resized_shape_dtype(photos):
    for p in photos:
        a = load_resized(p, 64)
        assert a.shape == (64, 64, 3) and a.dtype == np.uint8 and a.flags.writeable
    assert load_resized(photos[0], (32, 48)).shape == (32, 48, 3)  # (height, width)


def test_load_resized_is_squish_resize(photo):
    ref = np.asarray(load_pil(photo).resize((80, 60), Image.Resampling.BILINEAR))
    assert np.array_equal(load_resized(photo, (60, 80)), ref)  # 128x96 -> 80x60: too small for draft


def test_load_resized_uses_draft_on_big_jpeg(tmp_path, photo, monkeypatch):
    big = _photo_rgb(photo).resize((1024, 768), Image.Resampling.BICUBIC)
    p = tmp_path / "big.jpg"
    big.save(p, quality=95)
    calls = []
    orig = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = orig(self, mode, size)
        calls.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    a = load_resized(p, 64)
    assert calls and calls[0][0] == (64, 64) and calls[0][1] == (128, 96)  # 1/8 scale, still >= 64
    ref = np.asarray(big.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)
    assert np.abs(a.astype(np.int16) - ref).mean() < 4


def test_load_resized_draft_never_below_target(tmp_path, photo):
    big = _photo_rgb(photo).resize((1024, 768))
    p = tmp_path / "big.jpg"
    big.save(p, quality=95)
    with Image.open(p) as im:
        im.draft("RGB", (300, 100))
        assert im.size[0] >= 300 and im.size[1] >= 100
    assert load_resized(p, (100, 300)).shape == (100, 300, 3)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_load_resized_applies_orientation(tmp_path, photo, orientation):
    p = tmp_path / "rot.jpg"
    _save_with_orientation(_photo_rgb(photo), p, orientation)
    a = load_resized(p, (40, 30)).astype(np.int16)
    ref = np.asarray(load_pil(p).resize((30, 40), Image.Resampling.BILINEAR), dtype=np.int16)
    assert a.shape == (40, 30, 3)
    assert np.abs(a - ref).mean() < 2  # resize-then-rotate == rotate-then-resize, up to rounding


def test_load_resized_into_batch_slot(photos):
    batch = np.zeros((len(photos), 16, 16, 3), np.uint8)
    for i, p in enumerate(photos):
        assert np.shares_memory(load_resized(p, 16, out=batch[i]), batch)
    assert all(batch[i].any() for i in range(len(photos)))
    assert np.array_equal(batch[0], load_resized(photos[0], 16))


def test_load_resized_odd_modes(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)  # fully transparent -> white
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    assert (load_resized(tmp_path / "t.png", 5) == 255).all()
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "d.png")
    assert (load_resized(tmp_path / "d.png", 5) == 255).all()
    Image.fromarray(np.full((10, 10), 7, np.uint8)).save(tmp_path / "g.png")
    assert (load_resized(tmp_path / "g.png", 5) == 7).all()


# ----------------------------------------------------------------------------- failures


def _one_line(e: DecodeError, path) -> str:
    s = str(e)
    assert "\n" not in s and s.startswith(f"{path}: ")
    assert e.path == str(path)
    return e.reason


def test_truncated_jpeg(tmp_path, photo):
    data = photo.read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    for fn in (load_pil, lambda q: load_resized(q, 32)):
        with pytest.raises(DecodeError) as ei:
            fn(p)
        assert _one_line(ei.value, p) == "truncated JPEG"
    with pytest.raises(DecodeError, match="truncated JPEG"):
        load_pil_from_bytes(data[: len(data) // 2], "cut.jpg")


def test_truncated_png(tmp_path, photo):
    p = tmp_path / "cut.png"
    _photo_rgb(photo).save(p)
    p.write_bytes(p.read_bytes()[:-2000])
    with pytest.raises(DecodeError) as ei:
        load_pil(p)
    assert "truncated PNG" in _one_line(ei.value, p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.touch()
    with pytest.raises(DecodeError) as ei:
        load_pil(p)
    assert _one_line(ei.value, p) == "empty file (0 bytes)"
    with pytest.raises(DecodeError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_pil_from_bytes(b"", "empty.jpg")
    with pytest.raises(DecodeError, match="empty file"):
        load_resized(p, 8)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("hello, I am not a picture\n")
    with pytest.raises(DecodeError) as ei:
        load_pil(p)
    assert _one_line(ei.value, p) == "not an image file (cannot identify image format)"


def test_missing_and_directory(tmp_path):
    with pytest.raises(DecodeError, match="file not found"):
        load_pil(tmp_path / "nope.jpg")
    with pytest.raises(DecodeError, match="is a directory"):
        load_pil(tmp_path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height RGB pixels, with (almost) no pixel data: tens of bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_decompression_bomb_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))  # 10 G pixels claimed in ~70 bytes
    for fn in (load_pil, lambda q: load_resized(q, 224)):
        with pytest.raises(DecodeError) as ei:
            fn(p)
        assert _one_line(ei.value, p).startswith("decompression bomb: 10000000000 pixels > limit")


def test_decompression_bomb_limit_is_configurable(photo):
    with pytest.raises(DecodeError, match=r"decompression bomb: 12288 pixels > limit 12287"):
        load_pil(photo, max_pixels=128 * 96 - 1)
    with pytest.raises(DecodeError, match="decompression bomb"):
        load_resized(photo, 8, max_pixels=100)
    with pytest.raises(DecodeError, match="decompression bomb"):
        load_pil_from_bytes(photo.read_bytes(), "x", max_pixels=100)
    assert load_pil(photo, max_pixels=128 * 96).size == (128, 96)
    assert load_pil(photo, max_pixels=None).size == (128, 96)


def test_no_decompression_bomb_warning_below_limit(tmp_path, recwarn):
    # 10000 x 10000 = 100 M pixels: above Pillow's default warning threshold (89 M), below ours.
    p = tmp_path / "big.png"
    p.write_bytes(_png_header_only(10_000, 10_000))  # header only: fails as truncated, after the check
    with pytest.raises(DecodeError) as ei:
        load_pil(p)
    assert "decompression bomb" not in ei.value.reason
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_error_reason_is_one_line():
    e = DecodeError("a.jpg", "first line\nsecond line")
    assert str(e) == "a.jpg: first line second line"


def test_pillow_own_bomb_error_also_becomes_decode_error(photo, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # someone re-enabled Pillow's global check
    with pytest.raises(DecodeError) as ei:
        load_pil(photo)
    assert _one_line(ei.value, photo).startswith("decompression bomb: ")


# ----------------------------------------------------------------------------- bytes and in-memory images


@pytest.mark.parametrize("orientation", [1, 6])
def test_load_resized_from_bytes_matches_file(tmp_path, photo, orientation):
    p = tmp_path / "o.jpg"
    _save_with_orientation(_photo_rgb(photo), p, orientation)
    for size in (24, (40, 30)):
        assert np.array_equal(load_resized_from_bytes(p.read_bytes(), p.name, size), load_resized(p, size))
    t = tmp_path / "t.png"
    Image.fromarray(np.zeros((10, 10, 4), np.uint8), "RGBA").save(t)
    assert np.array_equal(load_resized_from_bytes(t.read_bytes(), t.name, 5), load_resized(t, 5))


def test_load_resized_from_bytes_errors_name_the_source():
    with pytest.raises(DecodeError, match=r"upload\.jpg.*empty"):
        load_resized_from_bytes(b"", "upload.jpg", 8)
    with pytest.raises(DecodeError, match=r"upload\.jpg"):
        load_resized_from_bytes(b"not an image at all", "upload.jpg", 8)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_resize_image_matches_the_file_path(tmp_path, photo, mode):
    im = _photo_rgb(photo).resize((90, 60))
    if mode == "RGBA":  # half transparent: must land on white, as files do
        im = im.convert("RGBA")
        alpha = np.zeros((60, 90), np.uint8)
        alpha[:, 45:] = 255
        im.putalpha(Image.fromarray(alpha))
    else:
        im = im.convert(mode)
    p = tmp_path / "m.png"
    im.save(p)
    a = resize_image(im, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, load_resized(p, 32))
    if mode == "RGBA":
        assert (a[:, :12] == 255).all()  # the transparent left half is white
