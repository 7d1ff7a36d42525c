"""fuse(): bands, their order of strength, and the reasons given."""
from __future__ import annotations

import pytest

from detectors.base import Detection
from detectors.c2pa_check import analyse_store, judge
from detectors.fusion import BANDS, FLAGGED_BANDS, Verdict, fuse

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def classifier(score: float, threshold: float = 0.5, *, calibrated: bool = True,
               domain: dict | None = None) -> Detection:
    """A classifier detection; by default from a reliably calibrated model, inside its domain."""
    sign = ">=" if score >= threshold else "<"
    return Detection(
        detector="hf-classifier",
        version="1",
        outcome="fake" if score >= threshold else "real",
        score=score,
        threshold=threshold,
        model_id="org/model",
        reasons=[f"classifier org/model scored {score:.2f} {sign} {threshold:.2f}"],
        details={"calibrated": calibrated,
                 "domain": domain if domain is not None else {"distance": 8.0, "limit": 12.0, "inside": True}},
    )


def c2pa(failure: list[str] = (), declared: bool = True, present: bool = True, trusted: bool = False) -> Detection:
    """A C2PA detection built by the real judging code from a manifest-store dict; `trusted`: the
    reader found the signer's chain in a configured trust anchor."""
    if not present:
        return Detection("c2pa", "1", "inconclusive", reasons=["no C2PA manifest"], details={"manifest_present": False})
    action = {"action": "c2pa.created"}
    if declared:
        action["digitalSourceType"] = TRAINED
    store = {
        "active_manifest": "m",
        "manifests": {
            "m": {
                "claim_generator": "Gen/2.0",
                "signature_info": {"common_name": "Gen Signer", "issuer": "Gen CA"},
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}}],
            }
        },
        "validation_results": {
            "activeManifest": {
                "success": ([] if "claimSignature.mismatch" in failure else [{"code": "claimSignature.validated"}])
                + ([{"code": "signingCredential.trusted",
                     "explanation": "signing certificate trusted, found in [user_anchors] trust anchors"}]
                   if trusted else []),
                "failure": [{"code": c} for c in failure],
            }
        },
    }
    facts = analyse_store(store)
    outcome, reasons = judge(facts)
    return Detection("c2pa", "1", outcome, reasons=reasons, details=facts)  # type: ignore[arg-type]


def watermark(found: bool) -> Detection:
    if found:
        return Detection(
            "invisible-watermark", "1", "fake",
            reasons=["invisible watermark of sdxl decoded (1/48 bits differ, BGR order)"],
        )
    return Detection("invisible-watermark", "1", "inconclusive", reasons=["no known invisible watermark decoded"])


def error(detector: str, reason: str = "corrupt image: truncated") -> Detection:
    return Detection(detector, "1", "error", reasons=[reason])


def test_flagged_bands():
    assert FLAGGED_BANDS == ("confirmed_ai", "likely_fake")
    assert BANDS[-1] == "no_signal"


def test_valid_manifest_declaring_ai_is_confirmed_only_from_a_trusted_signer():
    verdict = fuse([classifier(0.1), c2pa(trusted=True), watermark(False)], 0.3)
    assert verdict.band == "confirmed_ai"
    assert verdict.reasons[0] == (
        "C2PA manifest declares trainedAlgorithmicMedia (signed by Gen Signer (issuer Gen CA), claim generator Gen/2.0)"
    )
    assert verdict.reasons[1].startswith("C2PA signer trusted: signer Gen Signer, issuer Gen CA; trusted via")
    assert verdict.score == pytest.approx(0.1)
    # Anyone can make a certificate: an untrusted signer's declaration is at most a likely fake.
    untrusted = fuse([classifier(0.1), c2pa(["signingCredential.untrusted"]), watermark(False)], 0.3)
    assert untrusted.band == "likely_fake"
    assert untrusted.reasons == [
        "C2PA manifest declares trainedAlgorithmicMedia (signed by Gen Signer (issuer Gen CA), claim generator "
        "Gen/2.0), but the signer Gen Signer is not on the trust list: at most a likely fake"
    ]


def test_strongest_band_wins_and_all_reasons_are_kept():
    verdict = fuse([classifier(0.9), c2pa(trusted=True), watermark(True)], 0.3)
    assert verdict.band == "confirmed_ai"
    assert verdict.reasons[0].startswith("C2PA manifest declares trainedAlgorithmicMedia")
    assert "classifier org/model scored 0.90 >= 0.50" in verdict.reasons
    assert "invisible watermark of sdxl decoded (1/48 bits differ, BGR order)" in verdict.reasons


def test_watermark_alone_is_likely_fake():
    verdict = fuse([classifier(0.2), c2pa(present=False), watermark(True)], 0.3)
    assert verdict.band == "likely_fake"
    assert verdict.reasons == ["invisible watermark of sdxl decoded (1/48 bits differ, BGR order)"]


def test_classifier_at_threshold_is_likely_fake_and_above_review_needs_review():
    assert fuse([classifier(0.5)], 0.3).band == "likely_fake"
    review = fuse([classifier(0.42), c2pa(present=False)], 0.3)
    assert review.band == "needs_review" and review.score == pytest.approx(0.42)
    assert review.reasons == ["classifier org/model scored 0.42 < 0.50 (at or above the review threshold 0.30)"]
    quiet = fuse([classifier(0.29), c2pa(present=False), watermark(False)], 0.3)
    assert quiet.band == "no_signal"
    assert "hf-classifier: classifier org/model scored 0.29 < 0.50" in quiet.reasons
    assert "c2pa: no C2PA manifest" in quiet.reasons


def test_tampered_manifest_needs_review():
    verdict = fuse([classifier(0.1), c2pa(["assertion.dataHash.mismatch"], declared=False)], 0.3)
    assert verdict.band == "needs_review"
    assert "altered after it was signed (tampering)" in verdict.reasons[0]
    # A declaration of AI on altered content is not a confirmation either.
    declared = fuse([c2pa(["assertion.dataHash.mismatch"])], 0.3)
    assert declared.band == "needs_review"
    assert any(r.endswith("but the content was altered after signing") for r in declared.reasons)


def test_declaration_with_broken_signature_needs_review():
    verdict = fuse([classifier(0.1), c2pa(["claimSignature.mismatch"])], 0.3)
    assert verdict.band == "needs_review"
    assert any(r.endswith("but its signature does not validate") for r in verdict.reasons)


def test_error_counts_only_when_nothing_else_could_judge():
    alone = fuse([error("hf-classifier"), c2pa(present=False), watermark(False)], 0.3)
    assert alone.band == "needs_review"
    assert alone.reasons == [
        "hf-classifier could not analyse the item (corrupt image: truncated) and no other detector could judge it"
    ]
    assert alone.score is None
    judged_elsewhere = fuse([classifier(0.1), error("invisible-watermark")], 0.3)
    assert judged_elsewhere.band == "no_signal"


def test_nothing_to_fuse_and_bad_threshold():
    assert fuse([], 0.3) == Verdict("no_signal", None, ["no detector ran on this item"])
    with pytest.raises(ValueError, match="review_threshold"):
        fuse([], 1.5)
    assert fuse([classifier(0.9)], 0.3).to_dict()["band"] == "likely_fake"


# ------------------------------------------------------------------------------------ unsigned metadata


def metadata(says_ai: bool = True) -> Detection:
    """A metadata-provenance detection built by the real judging code from collected fields."""
    from detectors.metadata import judge

    fields = [("png:parameters", "a rally\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")] if says_ai else []
    outcome, reasons, details = judge(fields)
    return Detection("metadata-provenance", "1", outcome, reasons=reasons, details=details)  # type: ignore[arg-type]


def test_metadata_alone_asks_for_review_never_more():
    verdict = fuse([classifier(0.1), c2pa(present=False), watermark(False), metadata()], 0.3)
    assert verdict.band == "needs_review"
    assert verdict.reasons[0].startswith("PNG text chunk 'parameters' holds generation settings of Stable Diffusion")
    assert any("unsigned" in r and "never confirms AI on its own" in r for r in verdict.reasons)
    assert verdict.reasons[-1] == "no other detector backs the metadata up, so a person should review it"
    assert verdict.score == pytest.approx(0.1)  # metadata has no score of its own


def test_metadata_backed_by_a_review_level_score_is_likely_fake():
    verdict = fuse([classifier(0.42), c2pa(present=False), metadata()], 0.3)
    assert verdict.band == "likely_fake"
    assert verdict.reasons[-2:] == [
        "the unsigned metadata agrees with the hf-classifier score 0.42, so together they make a likely fake",
        "classifier org/model scored 0.42 < 0.50 (at or above the review threshold 0.30)",
    ]
    # Even with a certain classifier, unsigned metadata never makes it "confirmed AI".
    assert fuse([classifier(0.99), metadata()], 0.3).band == "likely_fake"
    assert fuse([watermark(True), metadata()], 0.3).reasons[-1].endswith(
        "agrees with the decoded watermark, so together they make a likely fake")


def test_metadata_next_to_signed_provenance_and_without_a_claim():
    signed = fuse([c2pa(trusted=True), metadata()], 0.3)
    assert signed.band == "confirmed_ai"
    # An untrusted signer's declaration still backs the metadata up, to a likely fake.
    untrusted = fuse([c2pa(["signingCredential.untrusted"]), metadata()], 0.3)
    assert untrusted.band == "likely_fake" and "not on the trust list" in untrusted.reasons[0]
    assert signed.reasons[0].startswith("C2PA manifest declares trainedAlgorithmicMedia")
    # A declaration whose signature fails is one more unsigned claim: it backs nothing up.
    broken = fuse([c2pa(["claimSignature.mismatch"]), metadata()], 0.3)
    assert broken.band == "needs_review"
    assert broken.reasons[-1] == "no other detector backs the metadata up, so a person should review it"
    # A signed declaration on content altered since signing does.
    altered = fuse([c2pa(["assertion.dataHash.mismatch"]), metadata()], 0.3)
    assert altered.band == "likely_fake"
    assert any(r.endswith("agrees with the signed C2PA declaration, so together they make a likely fake")
               for r in altered.reasons)
    quiet = fuse([classifier(0.1), metadata(says_ai=False)], 0.3)
    assert quiet.band == "no_signal"
    assert any(r.startswith("metadata-provenance: no AI generator metadata") for r in quiet.reasons)


def test_learned_score_outside_its_domain_only_asks_for_review():
    outside = fuse([classifier(1.0, domain={"distance": 41.2, "limit": 12.3, "inside": False})], 0.3)
    assert outside.band == "needs_review" and outside.score == 1.0
    assert outside.reasons[-1] == ("outside the data this model was validated on: distance 41 > limit 12, "
                                   "so its score alone is not a finding")
    uncalibrated = fuse([classifier(0.9, calibrated=False)], 0.3)
    assert uncalibrated.band == "needs_review"
    assert uncalibrated.reasons[-1].startswith("model not calibrated")
    no_check = fuse([classifier(0.9, domain={"inside": None, "note": "no domain check fitted for this model"})], 0.3)
    assert no_check.band == "needs_review" and "no domain check fitted" in no_check.reasons[-1]
    # Inside and calibrated: the score counts.
    assert fuse([classifier(0.9)], 0.3).band == "likely_fake"
    # An untrusted score does not back unsigned metadata up either.
    assert fuse([classifier(0.99, calibrated=False), metadata()], 0.3).band == "needs_review"
    # Other evidence is untouched: a watermark still makes it likely fake.
    assert fuse([classifier(0.9, calibrated=False), watermark(True)], 0.3).band == "likely_fake"
