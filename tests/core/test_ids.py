"""Request-id normalisation: engine decorations are undone, others kept."""

from __future__ import annotations

import pytest

from contextpilot.core.ids import is_health_check, new_request_id, normalize_request_id

RID = "req-0123456789abcdef"


@pytest.mark.parametrize(
    "seen",
    [
        RID,
        f"  {RID} ",
        f"chatcmpl-{RID}",
        f"cmpl-{RID}",
        f"batch-{RID}",
        f"{RID}-0-deadbeef",  # older vLLM: -<n>-<hex>
        f"{RID}-9f3a2b1c",  # vLLM: -<8 random hex>
        f"chatcmpl-{RID}-9f3a2b1c",  # vLLM's chat form
        f"cmpl-{RID}-3",  # vLLM OpenAI server, prompt index
        f"chatcmpl-{RID}_0",
    ],
)
def test_decorated_forms_of_our_ids_map_back(seen):
    assert normalize_request_id(seen) == RID


def test_foreign_ids_are_kept_but_for_known_decorations():
    assert normalize_request_id("req-ab12-0-deadbeef") == "req-ab12"
    assert normalize_request_id("my-request-7") == "my-request-7"
    assert normalize_request_id("req-nope") == "req-nope"
    # not one of ours (15 hex digits): a suffix is not stripped on a guess
    assert normalize_request_id("req-0123456789abcde-9f3a2b1c") == "req-0123456789abcde-9f3a2b1c"


def test_minted_ids_are_ours_and_unique():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(normalize_request_id(i + "-abcdef12") == i for i in ids)
    assert is_health_check("HEALTH_CHECK_3") and not is_health_check(RID)
