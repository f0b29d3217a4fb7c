"""Call recordings: type by content, size limits, file and DB storage with checksum, audited play and delete."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditLog, Recording
from services import recordings
from services.errors import UserError
from services.recordings import RecordingPolicy
from tests.factories import create_patient, create_user
from tests.factories_followup import as_current

NOW = datetime(2026, 6, 15, 10, 0)


def wav_bytes(seconds: float = 0.1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))
    return buf.getvalue()


def mp3_bytes(frames: int = 3) -> bytes:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: each frame is 417 bytes (header + silent payload).
    return (b"\xff\xfb\x90\x64" + b"\x00" * 413) * frames


def ogg_bytes() -> bytes:
    # One Ogg page (capture pattern, version 0, BOS flag) carrying a minimal Vorbis identification header.
    payload = b"\x01vorbis" + struct.pack("<IBIiii", 0, 1, 8000, 0, 64000, 0) + b"\xb8\x01"
    header = b"OggS" + struct.pack("<BBqIIIB", 0, 2, 0, 1, 0, 0, 1) + bytes([len(payload)])
    page = header + payload
    crc = zlib.crc32(page) & 0xFFFFFFFF  # not Ogg's CRC polynomial; the checker reads the magic, not the CRC
    return page[:22] + struct.pack("<I", crc) + page[26:]


def m4a_bytes() -> bytes:
    return struct.pack(">I", 24) + b"ftypM4A " + b"\x00\x00\x00\x00" + b"M4A isom" + b"\x00" * 64


@pytest.fixture
def policy(tmp_path: Path) -> RecordingPolicy:
    return RecordingPolicy(tmp_path / "rec", max_bytes=1024 * 1024)


@pytest.mark.parametrize(("make", "kind"), [(wav_bytes, "wav"), (mp3_bytes, "mp3"), (ogg_bytes, "ogg"),
                                            (m4a_bytes, "m4a"), (lambda: b"ID3\x04\x00" + b"\x00" * 40, "mp3")])
def test_detect_audio(make: object, kind: str) -> None:
    assert recordings.detect_audio(make()) == kind  # type: ignore[operator]


def test_text_renamed_mp3_and_other_files_are_not_audio() -> None:
    assert recordings.detect_audio("这不是录音 not audio".encode()) is None
    assert recordings.detect_audio(b"%PDF-1.7\n") is None
    assert recordings.detect_audio(b"\xff\xd8\xff\xe0JFIF") is None  # a JPEG also starts with 0xFF


@pytest.mark.parametrize("in_db", [False, True])
def test_store_and_play_back(session: Session, tmp_path: Path, in_db: bool) -> None:
    policy = RecordingPolicy(tmp_path / "rec", max_bytes=1024 * 1024, in_db=in_db)
    nurse = as_current(create_user(session))
    p = create_patient(session)
    data = wav_bytes()
    rec = recordings.store_recording(session, patient_id=p.id, filename="call.wav", data=data, user=nurse,
                                     policy=policy, now=NOW)
    assert (rec.storage, rec.content_type, rec.size_bytes) == ("db" if in_db else "file", "audio/wav", len(data))
    if not in_db:
        assert (policy.directory / (rec.path or "")).read_bytes() == data
        assert rec.data is None
    played, ctype = recordings.play_recording(session, recording_id=rec.id, user=nurse, policy=policy, now=NOW)
    assert (played, ctype) == (data, "audio/wav")
    actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["recording_upload", "recording_play"]


@pytest.mark.parametrize(
    ("data", "name", "key"),
    [
        (b"", "empty.wav", "recordings.empty"),
        ("随访记录 text".encode(), "notes.mp3", "recordings.not_audio"),
        (b"\x00" * (1024 * 1024 + 1), "big.wav", "recordings.too_big"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_written(session: Session, policy: RecordingPolicy, data: bytes,
                                                      name: str, key: str) -> None:
    nurse = as_current(create_user(session))
    p = create_patient(session)
    with pytest.raises(UserError) as err:
        recordings.store_recording(session, patient_id=p.id, filename=name, data=data, user=nurse, policy=policy,
                                   now=NOW)
    assert err.value.key == key
    assert session.scalar(select(func.count()).select_from(Recording)) == 0
    assert not policy.directory.exists()


def test_tampered_file_is_detected(session: Session, policy: RecordingPolicy) -> None:
    nurse = as_current(create_user(session))
    rec = recordings.store_recording(session, patient_id=create_patient(session).id, filename="a.mp3",
                                     data=mp3_bytes(), user=nurse, policy=policy, now=NOW)
    (policy.directory / (rec.path or "")).write_bytes(mp3_bytes(2))
    with pytest.raises(UserError) as err:
        recordings.play_recording(session, recording_id=rec.id, user=nurse, policy=policy, now=NOW)
    assert err.value.key == "recordings.checksum_mismatch"


def test_delete_is_admin_only_and_audited(session: Session, policy: RecordingPolicy) -> None:
    nurse = as_current(create_user(session))
    admin = as_current(create_user(session, role="admin"))
    rec = recordings.store_recording(session, patient_id=create_patient(session).id, filename="a.ogg",
                                     data=ogg_bytes(), user=nurse, policy=policy, now=NOW)
    with pytest.raises(UserError) as err:
        recordings.delete_recording(session, recording_id=rec.id, user=nurse, policy=policy, now=NOW)
    assert err.value.key == "recordings.delete_admin_only"
    recordings.delete_recording(session, recording_id=rec.id, user=admin, policy=policy, now=NOW)
    assert rec.deleted_at == NOW
    assert not (policy.directory / (rec.path or "")).exists()
    assert session.scalars(select(AuditLog.action).where(AuditLog.action == "recording_delete")).one()
    with pytest.raises(UserError) as err:
        recordings.play_recording(session, recording_id=rec.id, user=admin, policy=policy, now=NOW)
    assert err.value.key == "recordings.not_found"


def test_manager_cannot_upload(session: Session, policy: RecordingPolicy) -> None:
    manager = as_current(create_user(session, role="manager"))
    with pytest.raises(UserError) as err:
        recordings.store_recording(session, patient_id=create_patient(session).id, filename="a.wav",
                                   data=wav_bytes(), user=manager, policy=policy, now=NOW)
    assert err.value.key == "recordings.not_allowed"


def test_policy_from_settings(tmp_path: Path) -> None:
    from config import load_settings

    s = load_settings(env={"CARELOOP_DEMO": "1", "CARELOOP_DATA_DIR": str(tmp_path),
                           "CARELOOP_RECORDINGS_DIR": str(tmp_path / "audio"), "CARELOOP_RECORDING_MAX_MB": "2",
                           "CARELOOP_RECORDINGS_IN_DB": "1", "CARELOOP_FOLLOWUP_MAX_FAILED_ATTEMPTS": "4"},
                      secrets_path=tmp_path / "none.toml")
    policy = RecordingPolicy.from_settings(recordings_dir=s.recordings_dir, recording_max_mb=s.recording_max_mb,
                                           recordings_in_db=s.recordings_in_db)
    assert policy == RecordingPolicy(tmp_path / "audio", 2 * 1024 * 1024, True)
    assert s.followup_max_failed_attempts == 4
    default = load_settings(env={"CARELOOP_DEMO": "1", "CARELOOP_DATA_DIR": str(tmp_path)},
                            secrets_path=tmp_path / "none.toml")
    assert (default.recording_max_mb, default.recordings_in_db) == (50.0, False)
