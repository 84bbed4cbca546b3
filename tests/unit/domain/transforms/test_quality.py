import pytest

from aperture.domain.transforms import InvalidOperation, parse_ops, parse_query

from .helpers import decode, encode, photo, psnr, render_one


def test_lower_quality_is_smaller_and_worse():
    data = encode(photo((256, 192)))
    low, high = render_one(data, "quality:10", "jpg"), render_one(data, "quality:95", "jpg")
    assert len(low.data) < len(high.data) / 2
    original = decode(data)
    assert psnr(decode(low.data), original) < psnr(decode(high.data), original)


def test_webp_quality():
    data = encode(photo((256, 192)))
    assert len(render_one(data, "quality:5", "webp").data) < len(render_one(data, "quality:95", "webp").data)


def test_the_last_quality_wins_and_it_may_stand_anywhere():
    data = encode(photo((256, 192)))
    pipeline = parse_ops("quality:10|resize:50%|quality:90")
    assert pipeline.quality == 90
    assert render_one(data, str(pipeline), "jpg").data == render_one(data, "resize:50%|quality:90", "jpg").data


def test_default_quality():
    data = encode(photo((256, 192)))
    assert render_one(data, "", "jpg").data == render_one(data, "quality:85", "jpg").data
    assert render_one(data, "", "webp").data == render_one(data, "quality:80", "webp").data
    assert parse_ops("resize:50%").quality is None


def test_lossless_outputs_ignore_quality():
    data = encode(photo((64, 48)))
    assert render_one(data, "quality:5", "png").data == render_one(data, "", "png").data


@pytest.mark.parametrize("value", ["0", "101", "-5", "80.5", "high", "", "1e2"])
def test_out_of_range_is_rejected(value):
    with pytest.raises(InvalidOperation, match="quality"):
        parse_ops(f"quality:{value}")


def test_query_form():
    assert parse_query([("quality", "80")]).quality == 80
