"""Unsigned provenance metadata: files built with Pillow and PyAV the way generators write them."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from detectors.base import MediaInput
from detectors.metadata import GENERATOR_SIGNS, UNSIGNED_CAVEAT, MetadataProvenanceDetector

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111 = ("a ballot box on fire, photo, 35mm\nNegative prompt: blurry\nSteps: 28, Sampler: DPM++ 2M Karras, "
         "CFG scale: 6.5, Seed: 1234, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly")


@pytest.fixture(scope="module")
def detector() -> MetadataProvenanceDetector:
    return MetadataProvenanceDetector()


def item(data: bytes, kind: str = "image") -> MediaInput:
    return MediaInput(hashlib.sha256(data).hexdigest(), kind, data)


def picture(seed: int = 0, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8))


def png(texts: dict[str, str] | None = None, *, ztxt: tuple[str, ...] = (), itxt: dict[str, str] | None = None,
        compress_itxt: bool = False) -> bytes:
    info = PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value, zip=key in ztxt)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value, lang="", tkey="", zip=compress_itxt)
    buf = io.BytesIO()
    picture().save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def png_chunk_after_image(data: bytes, key: str, value: str) -> bytes:
    """A tEXt chunk put after the image data, just before IEND (where some writers put it)."""
    body = key.encode("latin-1") + b"\x00" + value.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def xmp(*, source_type: str | None = None, as_resource: bool = False, creator_tool: str | None = None,
        credit: str | None = None, description: str | None = None) -> bytes:
    attrs = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    props = ""
    if source_type and as_resource:
        props += f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{IPTC}{source_type}"/>'
    elif source_type:
        props += f"<Iptc4xmpExt:DigitalSourceType>{IPTC}{source_type}</Iptc4xmpExt:DigitalSourceType>"
    if credit:
        props += f"<photoshop:Credit>{credit}</photoshop:Credit>"
    if description:
        props += (f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt>'
                  "</dc:description>")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/"{attrs}>{props}</rdf:Description></rdf:RDF></x:xmpmeta>'
        '<?xpacket end="w"?>'
    ).encode("utf-8")


def jpeg(*, xmp_packet: bytes | None = None, software: str | None = None, make: str | None = None,
         user_comment: bytes | None = None) -> bytes:
    img = picture(1)
    exif = img.getexif()
    if software:
        exif[0x0131] = software
    if make:
        exif[0x010F] = make
    if user_comment is not None:
        exif.get_ifd(0x8769)[0x9286] = user_comment
    buf = io.BytesIO()
    kwargs = {"exif": exif.tobytes()} if (software or make or user_comment is not None) else {}
    if xmp_packet is not None:
        kwargs["xmp"] = xmp_packet
    img.save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def generators(det) -> list[str]:
    return det.details["generators"]


# ------------------------------------------------------------------------------------ PNG text


def test_automatic1111_parameters_in_png(detector):
    det = detector.detect_one(item(png({"parameters": A1111})))
    assert det.outcome == "fake" and det.score is None
    assert generators(det) == ["Stable Diffusion web UI (AUTOMATIC1111, Forge, SD.Next)"]
    assert det.reasons[0] == (
        "PNG text chunk 'parameters' holds generation settings of Stable Diffusion web UI (steps, sampler, "
        "seed) (Stable Diffusion web UI (AUTOMATIC1111, Forge, SD.Next))"
    )
    assert det.reasons[-1] == UNSIGNED_CAVEAT and det.details["signed"] is False
    assert det.details["generator_signs"][0]["excerpt"].startswith("a ballot box on fire")


def test_comfyui_graph_compressed_and_after_the_image_data(detector):
    prompt = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}})
    workflow = json.dumps({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}]})
    data = png_chunk_after_image(png({"workflow": workflow}, ztxt=("workflow",)), "prompt", prompt)
    det = detector.detect_one(item(data))
    assert det.outcome == "fake" and generators(det) == ["ComfyUI"]
    assert {s["field"] for s in det.details["generator_signs"]} == {"png:prompt", "png:workflow"}


def test_novelai_software_and_comment(detector):
    comment = json.dumps({"prompt": "a rally", "steps": 28, "sampler": "k_euler", "uncond_scale": 1.0})
    det = detector.detect_one(item(png({"Software": "NovelAI", "Source": "NovelAI Diffusion V4", "Comment": comment})))
    assert generators(det) == ["NovelAI"]
    assert "PNG text chunk 'software' holds the NovelAI image generator's name (NovelAI)" in det.reasons
    assert any(r.startswith("PNG text chunk 'comment' holds NovelAI generation settings") for r in det.reasons)


def test_xmp_in_a_compressed_png_itxt_chunk(detector):
    packet = xmp(source_type="trainedAlgorithmicMedia").decode("utf-8")
    det = detector.detect_one(item(png(itxt={"XML:com.adobe.xmp": packet}, compress_itxt=True)))
    assert det.outcome == "fake"
    assert det.reasons[0] == ("unsigned XMP metadata declares the IPTC digital source type trainedAlgorithmicMedia "
                              "(made by generative AI (a model trained on sampled content))")


def test_ordinary_png_text_is_not_a_generator(detector):
    det = detector.detect_one(item(png({"parameters": "exposure=1/200 iso=400", "Software": "GIMP 2.10"})))
    assert det.outcome == "inconclusive" and det.details["ai_declared"] is False
    assert det.reasons[-1].startswith("no AI generator metadata or IPTC digital source type of AI found")
    assert {"png:parameters", "png:software"} <= set(det.details["fields_read"])


# ------------------------------------------------------------------------------------ JPEG: XMP and EXIF


def test_xmp_in_jpeg_source_type_and_creator_tool(detector):
    packet = xmp(source_type="compositeWithTrainedAlgorithmicMedia", as_resource=True, creator_tool="Adobe Firefly")
    data = jpeg(xmp_packet=packet)
    assert b"http://ns.adobe.com/xap/1.0/\x00" in data[:4096]  # an APP1 XMP segment, as cameras and tools write
    det = detector.detect_one(item(data))
    assert det.outcome == "fake"
    assert det.details["digital_source_types"] == [{
        "term": "compositeWithTrainedAlgorithmicMedia", "uri": IPTC + "compositeWithTrainedAlgorithmicMedia",
        "category": "ai_edited",
        "meaning": "a composite that includes generative-AI elements (e.g. inpainting, generative fill)"}]
    assert generators(det) == ["Adobe Firefly"]
    assert "XMP creatortool holds Adobe Firefly's name (Adobe Firefly)" in det.reasons


def test_midjourney_job_id_and_google_credit_in_xmp(detector):
    packet = xmp(description="a crowd at a polling station --ar 3:2 Job ID: 6f1c2b0e-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
                 credit="Made with Google AI")
    det = detector.detect_one(item(jpeg(xmp_packet=packet)))
    assert generators(det) == ["Google generative AI", "Midjourney"]


def test_automatic1111_user_comment_in_jpeg_exif(detector):
    # AUTOMATIC1111 saves JPEG settings with piexif: "UNICODE\0" then UTF-16 big-endian text.
    data = jpeg(user_comment=b"UNICODE\x00" + A1111.encode("utf-16-be"), software="Stable Diffusion web UI")
    det = detector.detect_one(item(data))
    assert generators(det) == ["Stable Diffusion", "Stable Diffusion web UI (AUTOMATIC1111, Forge, SD.Next)"]
    assert any(r.startswith("EXIF usercomment holds generation settings") for r in det.reasons)
    assert any(r.startswith("EXIF software holds a Stable Diffusion application's name") for r in det.reasons)
    # Other writers use little-endian UTF-16: the text is read either way.
    little = detector.detect_one(item(jpeg(user_comment=b"UNICODE\x00" + A1111.encode("utf-16-le"))))
    assert generators(little) == ["Stable Diffusion web UI (AUTOMATIC1111, Forge, SD.Next)"]
    assert little.details["generator_signs"][0]["excerpt"].startswith("a ballot box on fire")


def test_clean_camera_photo(detector):
    data = jpeg(xmp_packet=xmp(source_type="digitalCapture", creator_tool="Adobe Photoshop 25.0 (Windows)"),
                software="Adobe Photoshop 25.0 (Windows)", make="Canon")
    det = detector.detect_one(item(data))
    assert det.outcome == "inconclusive" and det.details["ai_declared"] is False
    assert det.details["generator_signs"] == []
    assert det.reasons[0] == "unsigned metadata declares digitalCapture (a digital camera capture); not relied on"
    assert {"exif:software", "exif:make", "xmp:creatortool", "xmp:digitalsourcetype"} <= set(det.details["fields_read"])
    bare = detector.detect_one(item(jpeg()))
    assert bare.outcome == "inconclusive" and bare.details["fields_read"] == []


def test_damaged_xmp_packet_still_gives_its_source_type(detector):
    packet = xmp(source_type="trainedAlgorithmicMedia").replace(b"</rdf:Description>", b"</rdf:Descr>")
    det = detector.detect_one(item(jpeg(xmp_packet=packet)))
    assert det.outcome == "fake" and det.details["digital_source_types"][0]["term"] == "trainedAlgorithmicMedia"
    assert det.details["unreadable"][0].startswith("an XMP packet is not well-formed XML")


# ------------------------------------------------------------------------------------ video


def mp4_with_tags(comment: str, xmp_packet: bytes | None) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        container.metadata["comment"] = comment
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buf.getvalue()
    if xmp_packet is not None:
        # XMP's own MP4 box: a top-level 'uuid' box with Adobe's XMP UUID.
        uuid = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
        data += struct.pack(">I", 8 + 16 + len(xmp_packet)) + b"uuid" + uuid + xmp_packet
    return data


def test_video_container_tags_and_xmp_box(detector):
    data = mp4_with_tags("made with Stable Diffusion (Deforum)", xmp(source_type="trainedAlgorithmicMedia"))
    det = detector.detect_one(item(data, "video"))
    assert det.outcome == "fake"
    assert det.details["digital_source_types"][0]["term"] == "trainedAlgorithmicMedia"
    assert "video tag 'comment' holds a Stable Diffusion application's name (Stable Diffusion)" in det.reasons
    plain = detector.detect_one(item(mp4_with_tags("holiday 2026", None), "video"))
    assert plain.outcome == "inconclusive" and "video:comment" in plain.details["fields_read"]


# ------------------------------------------------------------------------------------ bad input, table


def test_not_media_and_empty_files_are_errors(detector):
    html = detector.detect_one(item(b"<!DOCTYPE html><html><body>Rate limited</body></html>"))
    assert html.outcome == "error" and html.reasons == ["not an image: sniffed text/html"]
    assert detector.detect_one(item(b"")).reasons == ["empty file"]
    # A truncated JPEG still has its headers, and so its metadata.
    data = jpeg(software="Midjourney")
    cut = detector.detect_one(item(data[: len(data) // 2]))
    assert cut.outcome == "fake" and generators(cut) == ["Midjourney"]
    assert [d.outcome for d in detector.detect_batch([item(b""), item(data)])] == ["error", "fake"]


def test_generator_table_is_complete():
    prefixes = ("png:", "exif:", "xmp:", "video:")
    for sign in GENERATOR_SIGNS:
        assert sign.generator and sign.says and sign.fields
        assert all(f.startswith(prefixes) and f == f.lower() for f in sign.fields), sign


# ------------------------------------------------------------------------------------ in the pipeline


def test_pipeline_metadata_alone_asks_for_review():
    pytest.importorskip("c2pa")
    from detectors.pipeline import DetectionPipeline

    pipe = DetectionPipeline(classifier_model=None, watermark=False)
    assert [d["name"] for d in pipe.describe()] == ["c2pa", "metadata-provenance"]
    flagged, clean = pipe.analyse([item(png({"parameters": A1111})), item(jpeg(software="Canon EOS"))])
    assert flagged.verdict.band == "needs_review"
    assert flagged.verdict.reasons[-1] == "no other detector backs the metadata up, so a person should review it"
    assert clean.verdict.band == "no_signal"
    off = DetectionPipeline(classifier_model=None, watermark=False, metadata=False)
    assert [d.detector for d in off.analyse([item(png({"parameters": A1111}))])[0].detections] == ["c2pa"]
