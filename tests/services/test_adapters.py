"""Channel adapters against real local servers: SMTP (aiosmtpd), an HTTP gateway (200/400/500/hang), the file folder."""

from __future__ import annotations

import json
import time
from email import message_from_bytes
from pathlib import Path

from config import load_settings
from services.messaging.adapters import (
    FileAdapter,
    HttpSmsAdapter,
    HttpWeChatAdapter,
    OutgoingMessage,
    SMTPAdapter,
    from_settings,
)
from tests.support.gateways import free_port, http_gateway, smtp_server


def _msg(channel: str = "sms", recipient: str = "13812345678", key: str = "fu:1") -> OutgoingMessage:
    return OutgoingMessage(id=1, idempotency_key=key, channel=channel, recipient=recipient,
                           body="张三您好，请于2026-06-16复诊。", subject="Careloop 健康提醒")


def test_smtp_delivers_to_a_real_server() -> None:
    with smtp_server() as (port, sink):
        adapter = SMTPAdapter(host="127.0.0.1", port=port, sender="careloop@hospital.cn", timeout=5)
        result = adapter.send(_msg("email", "zhang.san@example.cn", key="ex:42"))
        assert result.ok, result.error
        assert len(sink.messages) == 1
        env = sink.messages[0]
        assert env.rcpt_tos == ["zhang.san@example.cn"] and env.mail_from == "careloop@hospital.cn"
        mail = message_from_bytes(env.content)
        assert mail["Message-ID"] == "<ex.42@careloop>" and mail["X-Idempotency-Key"] == "ex:42"
        payload = mail.get_payload(decode=True)
        assert isinstance(payload, bytes) and "复诊" in payload.decode("utf-8")


def test_smtp_batch_keeps_one_connection() -> None:
    with smtp_server() as (port, sink):
        adapter = SMTPAdapter(host="127.0.0.1", port=port, sender="careloop@hospital.cn", timeout=5)
        with adapter.batch():
            for i in range(5):
                assert adapter.send(_msg("email", "zhang.san@example.cn", key=f"b:{i}")).ok
        assert adapter.connections == 1 and len(set(sink.peers)) == 1 and len(sink.messages) == 5
        # Outside a batch every message has its own connection, closed after it.
        for i in range(2):
            assert adapter.send(_msg("email", "zhang.san@example.cn", key=f"s:{i}")).ok
        assert adapter.connections == 3 and len(set(sink.peers)) == 3


def test_smtp_batch_reconnects_once_when_the_server_dropped_it() -> None:
    port = free_port()
    adapter = SMTPAdapter(host="127.0.0.1", port=port, sender="careloop@hospital.cn", timeout=5)
    with adapter.batch():
        with smtp_server(port) as (_, first):
            assert adapter.send(_msg("email", "a@example.cn", key="r:1")).ok
        # The server restarted: the kept connection is dead; the next message goes on a new one, once.
        with smtp_server(port) as (_, second):
            result = adapter.send(_msg("email", "a@example.cn", key="r:2"))
            assert result.ok, result.error
            assert adapter.send(_msg("email", "a@example.cn", key="r:3")).ok
        assert [len(first.messages), len(second.messages)] == [1, 2]
        assert adapter.connections == 2
        # No server at all: a recorded, retryable failure, not an exception.
        failed = adapter.send(_msg("email", "a@example.cn", key="r:4"))
        assert not failed.ok and not failed.permanent


def test_smtp_unreachable_is_a_retryable_failure() -> None:
    adapter = SMTPAdapter(host="127.0.0.1", port=free_port(), sender="careloop@hospital.cn", timeout=2)
    result = adapter.send(_msg("email", "a@b.cn"))
    assert not result.ok and not result.permanent
    assert result.error and "Refused" in result.error


def test_http_sms_200_sends_key_and_token() -> None:
    with http_gateway() as (url, log):
        result = HttpSmsAdapter(url=f"{url}/ok", token="s3cret", timeout=2).send(_msg())
        assert result.ok and result.provider_id == "gw-fu:1"
        req = log.requests[0]
        assert req["key"] == "fu:1" and req["auth"] == "Bearer s3cret"
        assert req["body"] == {"to": "13812345678", "text": _msg().body, "idempotency_key": "fu:1"}


def test_http_wechat_uses_openid() -> None:
    with http_gateway() as (url, log):
        assert HttpWeChatAdapter(url=f"{url}/ok", timeout=2).send(_msg("wechat", "oAbc_123456")).ok
        assert log.requests[0]["body"]["openid"] == "oAbc_123456"


def test_http_500_is_a_retryable_failure() -> None:
    with http_gateway() as (url, _):
        result = HttpSmsAdapter(url=f"{url}/fail", timeout=2).send(_msg())
    assert (result.ok, result.permanent, result.error) == (False, False, "HTTP 500 from gateway")


def test_http_400_is_permanent() -> None:
    with http_gateway() as (url, _):
        result = HttpSmsAdapter(url=f"{url}/reject", timeout=2).send(_msg())
    assert (result.ok, result.permanent) == (False, True)


def test_http_hang_times_out_without_raising() -> None:
    with http_gateway(hang_seconds=3) as (url, _):
        started = time.perf_counter()
        result = HttpSmsAdapter(url=f"{url}/hang", timeout=0.5).send(_msg())
        elapsed = time.perf_counter() - started
    assert not result.ok and not result.permanent
    assert result.error == "gateway timed out after 0.5 s"
    assert elapsed < 2.5


def test_http_unreachable_gateway() -> None:
    result = HttpSmsAdapter(url=f"http://127.0.0.1:{free_port()}/ok", timeout=1).send(_msg())
    assert not result.ok and not result.permanent


def test_file_adapter_writes_once(tmp_path: Path) -> None:
    adapter = FileAdapter(tmp_path)
    assert adapter.send(_msg()).ok
    assert adapter.send(_msg()).ok  # the same key again: same file, not a second one
    files = list((tmp_path / "sms").iterdir())
    assert [f.name for f in files] == ["fu_1.json"]
    data = json.loads(files[0].read_text(encoding="utf-8"))
    assert data["to"] == "13812345678" and data["idempotency_key"] == "fu:1"
    assert adapter.send(_msg("email", "a@b.cn", key="ed:7")).ok
    mail = message_from_bytes((tmp_path / "email" / "ed_7.eml").read_bytes())
    assert mail["To"] == "a@b.cn"


def test_file_adapter_unwritable_folder_is_a_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = FileAdapter(blocker).send(_msg())
    assert not result.ok and result.error


def test_adapters_from_settings(tmp_path: Path) -> None:
    env = {"CARELOOP_DEMO": "1", "CARELOOP_DATA_DIR": str(tmp_path), "CARELOOP_OUTBOX_DIR": str(tmp_path / "out"),
           "CARELOOP_SMTP_HOST": "127.0.0.1", "CARELOOP_SMTP_PORT": "2525", "CARELOOP_SMS_URL": "http://127.0.0.1:9/x"}
    adapters = from_settings(load_settings(env=env, secrets_path=tmp_path / "none.toml"))
    assert isinstance(adapters["email"], SMTPAdapter) and adapters["email"].port == 2525
    assert isinstance(adapters["sms"], HttpSmsAdapter)
    assert isinstance(adapters["wechat"], FileAdapter)
