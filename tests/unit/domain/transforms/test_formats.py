import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from aperture.domain.transforms import EXTENSIONS, InvalidOperation, Limits, output_format, parse_ops, render

from .helpers import MAX_PIXELS, decode, encode, photo, psnr, render_one, same_pixels

SAVE = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}
LOSSLESS = ("png", "gif", "tiff", "bmp")
MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "tif": "image/tiff",
    "bmp": "image/bmp",
}


def few_colours(size=(61, 37)) -> Image.Image:
    """200 colours in 16-pixel blocks plus a few single pixels: every lossless format,
    GIF included, holds it exactly, and lossy codecs keep it recognisable."""
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    blocks = rng.integers(0, 200, (size[1] // 16 + 1, size[0] // 16 + 1))
    indices = np.kron(blocks, np.ones((16, 16), dtype=int))[: size[1], : size[0]]
    indices[::9, ::7] = rng.integers(0, 200, indices[::9, ::7].shape)
    return Image.fromarray(palette[indices], "RGB")


@pytest.mark.parametrize("source, target", list(itertools.product(SAVE, EXTENSIONS)))
def test_every_pair_round_trips_dimensions_and_lossless_pixels(source, target):
    image = few_colours()
    data = encode(image, SAVE[source], **({"lossless": True} if source == "webp" else {}))
    out = render_one(data, "", target)
    assert (out.width, out.height) == image.size
    assert out.mime_type == MIME[target]
    assert out.format == output_format(target).name
    decoded = decode(out.data)
    assert decoded.format == out.format and decoded.size == image.size
    if source != "jpg" and target.lstrip(".") in LOSSLESS + ("tif",):
        assert same_pixels(decoded.convert("RGB"), image)
    elif source != "jpg":
        assert psnr(decoded, image) > 20  # lossy: close, not equal


@pytest.mark.parametrize("target", ["png", "jpg", "gif", "webp", "tiff", "bmp"])
def test_photo_conversions_are_close(target):
    image = photo((96, 64))
    out = decode(render_one(encode(image), "", target).data)
    assert psnr(out, image) > (28 if target == "gif" else 32)


def test_default_output_format_is_the_sources():
    for ext, fmt in SAVE.items():
        out = render(encode(few_colours(), fmt), None, None, max_pixels=MAX_PIXELS)[0]
        assert out.format == fmt and out.extension == ("tiff" if fmt == "TIFF" else ext)


@pytest.mark.parametrize("name", ["JPG", ".png", "Tif", "jpeg", "WEBP"])
def test_format_names(name):
    assert output_format(name).name in {"JPEG", "PNG", "TIFF", "WEBP"}


@pytest.mark.parametrize("name", ["svg", "pdf", "", "png2", "heic"])
def test_unknown_formats_are_rejected(name):
    with pytest.raises(InvalidOperation, match="unsupported output format"):
        render_one(encode(few_colours()), "", name or " ")


def test_alpha_is_kept_where_the_format_holds_it():
    image = photo((64, 48), "RGBA")
    for target in ("png", "tiff"):
        assert same_pixels(decode(render_one(encode(image), "", target).data), image)
    webp = decode(render_one(encode(image), "", "webp").data)
    assert webp.mode == "RGBA" and webp.getpixel((0, 0))[3] == 0


@pytest.mark.parametrize("target", ["jpg", "bmp"])
def test_alpha_is_flattened_on_white_for_jpeg_and_bmp(target):
    image = photo((64, 48), "RGBA")
    out = decode(render_one(encode(image), "", target).data)
    assert out.mode == "RGB"
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    expected = Image.alpha_composite(white, image).convert("RGB")
    assert psnr(out, expected) > (60 if target == "bmp" else 32)
    assert min(out.getpixel((0, 0))) > 245  # transparent corner -> white


def test_gif_transparency():
    image = few_colours((40, 30)).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 10, 10))
    out = decode(render_one(encode(image), "", "gif").data)
    assert "transparency" in out.info
    rgba = out.convert("RGBA")
    assert rgba.getpixel((5, 5))[3] == 0
    opaque = np.asarray(rgba)[10:, 10:]
    assert np.array_equal(opaque, np.asarray(image)[10:, 10:])


def test_gif_quantizes_photos():
    image = photo((128, 96))
    out = decode(render_one(encode(image), "", "gif").data)
    assert out.mode == "P" and psnr(out, image) > 28


@pytest.mark.parametrize("mode", ["L", "LA"])
@pytest.mark.parametrize("target", ["png", "jpg", "gif", "webp", "tiff", "bmp"])
def test_grey_sources_in_every_format(mode, target):
    image = photo((40, 30), mode)
    out = render_one(encode(image), "", target)
    assert (out.width, out.height) == (40, 30)
    decoded = decode(out.data)
    if target in ("png", "tiff"):
        assert same_pixels(decoded, image)


def test_webp_is_limited_to_16383_pixels_on_a_side():
    with pytest.raises(InvalidOperation, match="webp output is limited to 16383 pixels on a side"):
        render_one(encode(Image.new("L", (400, 2))), "resize:5000%", "webp")


# ---------------------------------------------------------------- metadata


def source_with_metadata(fmt: str) -> bytes:
    image = photo((64, 48))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0110] = "Model X"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SecretXMP</x:xmpmeta>'
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", "SecretText")
        info.add_itxt("XML:com.adobe.xmp", xmp.decode())
        return encode(image, "PNG", exif=exif, icc_profile=icc, pnginfo=info)
    if fmt == "JPEG":
        return encode(image, "JPEG", exif=exif, icc_profile=icc, comment=b"SecretText", xmp=xmp)
    if fmt == "WEBP":
        return encode(image, "WEBP", exif=exif, icc_profile=icc, xmp=xmp)
    if fmt == "TIFF":
        return encode(image, "TIFF", exif=exif, icc_profile=icc, description="SecretText")
    raise AssertionError(fmt)


@pytest.mark.parametrize("source", ["PNG", "JPEG", "WEBP", "TIFF"])
@pytest.mark.parametrize("target", ["png", "jpg", "gif", "webp", "tiff", "bmp"])
def test_metadata_is_stripped(source, target):
    data = source_with_metadata(source)
    assert b"SecretCam" in data
    out = render_one(data, "", target).data
    for secret in (b"SecretCam", b"Model X", b"SecretText", b"SecretXMP", b"Exif\x00\x00", b"acsp"):
        assert secret not in out, secret
    decoded = decode(out)
    exif = decoded.getexif()  # for TIFF: the image's own tags, which must not include these
    assert not {0x010F, 0x0110, 0x8769, 0x0112, 700, 34675, 0x010E} & set(exif)
    assert target == "tiff" or not exif
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "Comment"} & set(decoded.info)


def test_metadata_is_stripped_after_operations_too():
    out = render_one(source_with_metadata("JPEG"), "resize:50%|rotate:10", "jpg").data
    assert b"SecretCam" not in out and b"Exif" not in out


# ---------------------------------------------------------------- animation


def animation(fmt: str, frames: int = 4, size=(40, 30), loop: int | None = 0) -> tuple[bytes, list[Image.Image]]:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    images = []
    for index in range(frames):
        frame = Image.new("RGB", size, colours[index % len(colours)])
        frame.paste((255, 255, 255), (index * 5, 0, index * 5 + 5, 5))  # a moving marker
        images.append(frame)
    options = {"save_all": True, "append_images": images[1:], "duration": [100 + 10 * i for i in range(frames)]}
    if loop is not None:
        options["loop"] = loop
    if fmt == "WEBP":
        options["lossless"] = True
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, **options)
    return buffer.getvalue(), images


def frames_of(data: bytes) -> list[Image.Image]:
    image = Image.open(io.BytesIO(data))
    result = []
    for index in range(image.n_frames):
        image.seek(index)
        result.append(image.convert("RGB"))
    return result


def durations_of(data: bytes) -> list[int]:
    image = Image.open(io.BytesIO(data))
    result = []
    for index in range(image.n_frames):
        image.seek(index)
        image.load()
        result.append(image.info["duration"])
    return result


@pytest.mark.parametrize("source, target", [("GIF", "gif"), ("GIF", "webp"), ("WEBP", "webp"), ("WEBP", "gif")])
def test_animations_keep_frames_durations_and_loop(source, target):
    data, images = animation(source, loop=3)
    out = render_one(data, "", target)
    assert out.frames == 4
    decoded = frames_of(out.data)
    assert len(decoded) == 4
    for got, expected in zip(decoded, images):
        assert psnr(got, expected) > 30
    assert durations_of(out.data) == [100, 110, 120, 130]
    assert Image.open(io.BytesIO(out.data)).info.get("loop") == 3


@pytest.mark.parametrize("target", ["gif", "webp"])
def test_operations_apply_to_every_frame(target):
    data, images = animation("GIF")
    out = render_one(data, "crop:0,0,30,20|flop|resize:200%", target)
    assert (out.width, out.height, out.frames) == (60, 40, 4)
    for got, expected in zip(frames_of(out.data), images):
        reference = expected.crop((0, 0, 30, 20)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        reference = reference.resize((60, 40), Image.Resampling.LANCZOS)
        assert psnr(got, reference) > 28


def test_split_animation_gives_four_animations():
    data, _ = animation("GIF")
    outputs = render(data, parse_ops("split"), "gif", max_pixels=MAX_PIXELS)
    assert [(out.width, out.height, out.frames) for out in outputs] == [(20, 15, 4)] * 4


def test_gif_that_plays_once_stays_so():
    data, _ = animation("GIF", loop=None)
    assert "loop" not in Image.open(io.BytesIO(data)).info
    assert "loop" not in Image.open(io.BytesIO(render_one(data, "", "gif").data)).info
    assert Image.open(io.BytesIO(render_one(data, "", "webp").data)).info["loop"] == 1


@pytest.mark.parametrize("target", ["png", "jpg", "tiff", "bmp"])
def test_formats_without_animation_get_the_first_frame(target):
    data, images = animation("GIF")
    out = render_one(data, "", target)
    assert out.frames == 1
    decoded = Image.open(io.BytesIO(out.data))
    assert getattr(decoded, "n_frames", 1) == 1
    assert psnr(decoded.convert("RGB"), images[0]) > 30


def test_animated_transparency_survives_gif_to_gif():
    frames = []
    for index in range(3):
        frame = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
        frame.paste((255, 0, 0, 255), (index * 5, 5, index * 5 + 5, 10))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0, disposal=2)
    out = render_one(buffer.getvalue(), "", "gif")
    image = Image.open(io.BytesIO(out.data))
    for index in range(3):
        image.seek(index)
        rgba = image.convert("RGBA")
        assert rgba.getpixel((index * 5 + 2, 7))[:4] == (255, 0, 0, 255)
        assert rgba.getpixel((19, 19))[3] == 0  # no ghost of earlier frames


def test_animation_pixel_budget():
    data, _ = animation("GIF", frames=6)
    pipeline = parse_ops("resize:400%", Limits(max_animation_pixels=100_000))
    with pytest.raises(InvalidOperation, match=r"animation would be 115200 pixels over its 6 frames"):
        render(data, pipeline, "gif", max_pixels=MAX_PIXELS)
    assert render(data, pipeline, "png", max_pixels=MAX_PIXELS)[0].frames == 1  # a still is fine
