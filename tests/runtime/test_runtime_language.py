"""The model's language: SID tokens, prompts, prefix encoding, the trie."""

import numpy as np
import pytest

from components.runtime.language import (
    SidTrie,
    decode_prefix,
    encode_prefix,
    format_prompt,
    parse_sid,
    prefix_trie,
    sid_text,
    sid_token_ids,
    sid_tokens,
)
from components.sids.sidmap import SidMap, SidMapError


def test_sid_text_roundtrip():
    assert sid_text([1, 200, 7]) == "<a_1><b_200><c_7>"
    assert parse_sid("<a_1><b_200><c_7>") == (1, 200, 7)
    with pytest.raises(ValueError):
        parse_sid("<a_1> <b_2>x")
    with pytest.raises(ValueError):
        parse_sid("<b_1><a_2>")
    assert len(sid_tokens([4, 4, 4])) == 12


def test_sidmap_save_load_and_a_missing_map_is_named(tmp_path):
    m = SidMap(["x", "y", "z"], np.array([[0, 1, 2], [0, 1, 3], [3, 0, 0]]), [4, 4, 4], "v1", {"k": 1})
    assert m.n_collisions() == 0 and m.item_of((0, 1, 3)) == "y" and m.item_of((1, 1, 1)) is None
    m2 = SidMap.load(m.save(tmp_path / "m"))
    assert m2.item_ids == m.item_ids and (m2.codes == m.codes).all() and m2.version == "v1"
    with pytest.raises(SidMapError, match="sidrec sids build"):
        SidMap.load(tmp_path / "nothing")


def test_prefix_encoding_is_one_text_form():
    assert encode_prefix((12, 7)) == "12_7" and decode_prefix("12_7") == (12, 7) and decode_prefix(b"3") == (3,)
    for bad in ("", "a_b", "1__2", "1,2", "-1_2"):
        with pytest.raises(ValueError, match="not a SID prefix"):
            decode_prefix(bad)


def test_prompt_skips_unknown_items_and_carries_titles_and_context(tiny_sid_model):
    _, _, sidmap = tiny_sid_model
    plain = format_prompt(["i1", "nope", "i2"], sidmap)
    assert plain == f"User bought: {sid_text(sidmap.codes_of('i1'))}{sid_text(sidmap.codes_of('i2'))}\nNext:"
    titled = format_prompt(["i1"], sidmap, {"i1": "A long title"}, context="weekday=mon")
    assert titled.startswith("weekday=mon\nUser bought: ") and '"A long title"' in titled


def test_trie_allows_exactly_the_maps_prefixes(tiny_sid_model):
    _, tokenizer, sidmap = tiny_sid_model
    trie = SidTrie.from_sidmap(sidmap, tokenizer)
    ids = sid_token_ids(tokenizer, sidmap)
    assert (trie.level_token_ids == ids).all()
    for item in sidmap.item_ids[:10]:
        codes = sidmap.codes_of(item)
        node = trie.node_of(codes)
        assert node is not None and trie.item_ids[trie.leaf_item[node]] == item
    first = {c[0] for c in sidmap.codes.tolist()}
    assert set(trie.allowed[0][0].nonzero().view(-1).tolist()) == first
    assert trie.node_of((99,)) is None
    two = prefix_trie(sidmap, tokenizer, 2)
    assert len(two.item_ids) == len({tuple(c[:2]) for c in sidmap.codes.tolist()})


def test_a_retired_item_speaks_in_prompts_but_is_never_recommended(tiny_sid_model):
    from components.runtime.recommender import Recommender, servable

    model, tokenizer, sidmap = tiny_sid_model
    retired = SidMap(sidmap.item_ids, sidmap.codes, sidmap.codebook_sizes, sidmap.version, retired={"i5", "i6"})
    recommender = Recommender([model], tokenizer, retired, beam_size=60, max_k=60)
    assert "i5" not in recommender.trie.item_ids and len(recommender.trie.item_ids) == 58
    rows = recommender.recommend([["i5"], ["i1", "i6"]], 58)
    assert all(len(r) == 58 and not {"i5", "i6"} & {i for i, _ in r} for r in rows)
    assert sid_text(sidmap.codes_of("i5")) in recommender.prompts([["i5"]])[0]
    assert not servable(retired)("i5") and servable(retired)("i7")
