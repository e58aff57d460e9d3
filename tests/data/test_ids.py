"""Exact GOD stimulus-id encoding."""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.data.ids import (
    category_of,
    image_name_to_stimulus_id,
    image_names_to_stimulus_ids,
    stimulus_id_key,
    stimulus_id_keys,
    stimulus_id_to_image_name,
    stimulus_id_to_wnid,
    stimulus_ids_to_categories,
    stimulus_ids_to_image_names,
    stimulus_ids_to_wnids,
    wnid_to_category,
)
from fmri2image.errors import DataFormatError


def test_documented_examples():
    assert stimulus_id_to_wnid(1518878.005958) == "n01518878"
    assert stimulus_id_to_image_name(1518878.005958) == "n01518878_5958"
    assert stimulus_id_to_image_name(1621127.019020) == "n01621127_19020"
    assert category_of(1621127.019020) == 1621127
    assert wnid_to_category("n01621127") == 1621127


def test_trailing_zero_trap():
    # str(1621127.01902) drops the trailing zero; string parsing would give 1902.
    assert str(1621127.01902) == "1621127.01902"
    assert stimulus_id_to_image_name(1621127.01902) == "n01621127_19020"
    assert stimulus_id_key(1621127.01902) == 1621127019020
    assert stimulus_id_to_image_name(float("1621127.019020")) == "n01621127_19020"
    assert stimulus_id_to_image_name(1621127.0019) == "n01621127_1900"


def test_round_trip_every_image_number():
    rng = np.random.default_rng(0)
    cats = rng.integers(1_000_000, 15_000_000, 2000)
    nums = np.r_[
        rng.integers(0, 1_000_000, 1990), [0, 1, 10, 100, 1000, 10000, 100000, 999999, 19020, 5958]
    ]
    ids = cats + nums / 1e6
    names = stimulus_ids_to_image_names(ids)
    expected = [f"n{c:08d}_{n}" for c, n in zip(cats, nums)]
    assert names.tolist() == expected
    back = image_names_to_stimulus_ids([n + ".JPEG" for n in names])
    np.testing.assert_array_equal(stimulus_id_keys(back), cats * 1_000_000 + nums)
    np.testing.assert_array_equal(back, ids)  # division by 1e6 is correctly rounded
    np.testing.assert_array_equal(stimulus_ids_to_categories(ids), cats)
    assert stimulus_ids_to_wnids(ids).tolist() == [f"n{c:08d}" for c in cats]


def test_scalar_and_vector_agree():
    ids = np.array([1518878.005958, 1621127.01902, 2084071.0])
    assert [stimulus_id_to_image_name(i) for i in ids] == stimulus_ids_to_image_names(ids).tolist()
    assert [stimulus_id_to_wnid(i) for i in ids] == stimulus_ids_to_wnids(ids).tolist()
    assert stimulus_ids_to_wnids(ids).dtype == object


def test_image_name_parsing():
    assert image_name_to_stimulus_id("n01621127_19020") == 1621127.01902
    assert image_name_to_stimulus_id('"n01518878_5958.jpg"') == 1518878.005958
    with pytest.raises(DataFormatError, match="not an ImageNet image name"):
        image_name_to_stimulus_id("cat_5958.JPEG")
    with pytest.raises(DataFormatError, match="WordNet noun id"):
        wnid_to_category("01518878")


def test_precision_loss_is_detected():
    with pytest.raises(DataFormatError, match="float32"):
        stimulus_id_keys(np.array([1518878.005958], dtype=np.float32))
    with pytest.raises(DataFormatError, match="more than 6 decimals"):
        stimulus_id_key(1518878.0059581)
    with pytest.raises(DataFormatError, match="NaN or negative"):
        stimulus_id_keys([1518878.005958, np.nan])
