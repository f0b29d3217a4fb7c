"""Call recordings: audio checked by its content, stored on disk with its checksum (or in the DB), audited."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from db.models import Patient, Recording
from services import audit
from services.auth import CurrentUser
from services.errors import UserError

MAX_FILENAME = 255
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "m4a": "audio/mp4", "ogg": "audio/ogg"}
# ISO base media brands an audio-only MP4 (.m4a) file is written with.
_M4A_BRANDS = {b"M4A ", b"M4B ", b"mp42", b"mp41", b"isom", b"iso2", b"dash", b"MSNV"}


@dataclass(frozen=True)
class RecordingPolicy:
    directory: Path
    max_bytes: int = 50 * 1024 * 1024
    in_db: bool = False

    @classmethod
    def from_settings(cls, *, recordings_dir: str, recording_max_mb: float, recordings_in_db: bool
                      ) -> RecordingPolicy:
        return cls(Path(recordings_dir), int(recording_max_mb * 1024 * 1024), recordings_in_db)


def _mp3_frame(head: bytes) -> bool:
    # MPEG audio frame header: 11 sync bits, a version that is not "reserved", a layer that is not "reserved".
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0x3
    return version != 1 and layer != 0 and bitrate != 0xF and rate != 0x3


def detect_audio(data: bytes) -> str | None:
    """The audio format by its magic bytes (wav, mp3, m4a, ogg), or None: the name proves nothing."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"OggS":
        return "ogg"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _M4A_BRANDS:
        return "m4a"
    if data[:3] == b"ID3" and len(data) >= 10:
        return "mp3"
    if _mp3_frame(data[:4]):
        return "mp3"
    return None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_recording(session: Session, *, patient_id: int, filename: str, data: bytes, user: CurrentUser,
                    policy: RecordingPolicy, now: datetime) -> Recording:
    """Validate and keep one audio file; content-addressed by sha256 so a retried upload writes the same file."""
    if user.role not in ("nurse", "admin"):
        raise UserError("recordings.not_allowed")
    if not data:
        raise UserError("recordings.empty")
    if len(data) > policy.max_bytes:
        raise UserError("recordings.too_big", mb=f"{len(data) / 1048576:.1f}",
                        limit=f"{policy.max_bytes / 1048576:.0f}")
    kind = detect_audio(data)
    if kind is None:
        raise UserError("recordings.not_audio", name=filename[:80])
    if session.get(Patient, patient_id) is None:
        raise UserError("recordings.no_patient")
    digest = hashlib.sha256(data).hexdigest()
    name = Path(filename).name[:MAX_FILENAME] or f"recording.{kind}"
    rec = Recording(patient_id=patient_id, filename=name, content_type=CONTENT_TYPES[kind], size_bytes=len(data),
                    sha256=digest, uploaded_by=user.id, uploaded_at=now,
                    storage="db" if policy.in_db else "file")
    if policy.in_db:
        rec.data = data
    else:
        relative = Path(f"{now:%Y}") / f"{now:%m}" / f"{digest}.{kind}"
        _write_atomically(policy.directory / relative, data)
        rec.path = relative.as_posix()
    session.add(rec)
    session.flush()
    audit.record(session, action="recording_upload", user_id=user.id, username=user.username, entity="recording",
                 entity_id=rec.id, patient_id=patient_id,
                 detail={"sha256": digest, "bytes": len(data), "type": kind}, at=now)
    return rec


def play_recording(session: Session, *, recording_id: int, user: CurrentUser, policy: RecordingPolicy,
                   now: datetime) -> tuple[bytes, str]:
    """The audio bytes and content type for playback; every playback leaves an audit row."""
    rec = session.get(Recording, recording_id)
    if rec is None or rec.deleted_at is not None:
        raise UserError("recordings.not_found")
    if rec.storage == "db":
        data = rec.data or b""
    else:
        path = policy.directory / (rec.path or "")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError("recordings.file_missing") from exc
    if hashlib.sha256(data).hexdigest() != rec.sha256:
        raise UserError("recordings.checksum_mismatch")
    audit.record(session, action="recording_play", user_id=user.id, username=user.username, entity="recording",
                 entity_id=rec.id, patient_id=rec.patient_id, at=now)
    return data, rec.content_type


def delete_recording(session: Session, *, recording_id: int, user: CurrentUser, policy: RecordingPolicy,
                     now: datetime) -> None:
    """Admin only. The row stays (marked deleted) so the audit trail and contact record still point at it."""
    if user.role != "admin":
        raise UserError("recordings.delete_admin_only")
    rec = session.get(Recording, recording_id)
    if rec is None or rec.deleted_at is not None:
        raise UserError("recordings.not_found")
    rec.deleted_at = now
    rec.data = None
    path = rec.path
    session.flush()
    audit.record(session, action="recording_delete", user_id=user.id, username=user.username, entity="recording",
                 entity_id=rec.id, patient_id=rec.patient_id, detail={"sha256": rec.sha256}, at=now)
    if path and rec.storage == "file":
        # The same content may back another (re-uploaded) row; only remove the file when no live row uses it.
        still_used = session.query(Recording.id).filter(
            Recording.path == path, Recording.deleted_at.is_(None), Recording.id != rec.id).first()
        if still_used is None:
            (policy.directory / path).unlink(missing_ok=True)
