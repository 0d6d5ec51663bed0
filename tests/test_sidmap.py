import numpy as np
import pytest

from components.sids.sidmap import SidMap, parse_sid, sid_string


def test_sid_string_roundtrip():
    assert sid_string([1, 200, 7]) == "<a_1><b_200><c_7>"
    assert parse_sid("<a_1><b_200><c_7>") == (1, 200, 7)
    with pytest.raises(ValueError):
        parse_sid("<a_1> <b_2>x")
    with pytest.raises(ValueError):
        parse_sid("<b_1><a_2>")


def test_sidmap_save_load(tmp_path):
    m = SidMap(["x", "y", "z"], np.array([[0, 1, 2], [0, 1, 3], [3, 0, 0]]), [4, 4, 4], "v1", {"k": 1})
    assert m.n_collisions() == 0 and m.item_of((0, 1, 3)) == "y" and m.item_of((1, 1, 1)) is None
    m2 = SidMap.load(m.save(tmp_path / "m"))
    assert m2.item_ids == m.item_ids and (m2.codes == m.codes).all() and m2.version == "v1"
    assert len(m2.all_tokens()) == 12
