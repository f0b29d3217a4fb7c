"""Channel adapters behind one small interface: send(message) -> DeliveryResult. They never raise.

SMTP (smtplib), SMS and WeChat over an HTTP gateway (urllib, with a timeout), and a file adapter for sites
without a gateway. The message's idempotency key travels to the gateway (Idempotency-Key header, Message-ID),
so a resend after a crash between "sent" and "recorded" is recognised by the gateway, not delivered twice.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from config import Settings


@dataclass(frozen=True)
class OutgoingMessage:
    id: int
    idempotency_key: str
    channel: str
    recipient: str
    body: str
    subject: str = "Careloop"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    error: str | None = None
    # A permanent failure (bad address, 4xx) is not retried; a transient one (5xx, timeout, refused) is.
    permanent: bool = False
    provider_id: str | None = None
    delivered: bool = False


class ChannelAdapter(Protocol):
    def send(self, message: OutgoingMessage) -> DeliveryResult: ...


def message_id(key: str) -> str:
    """An RFC 5322 Message-ID from the idempotency key (a colon is not allowed on its left side)."""
    return "<" + re.sub(r"[^A-Za-z0-9._\-]", ".", key) + "@careloop>"


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:400]


class BatchingAdapter(Protocol):
    """An adapter that can hold one gateway connection open for a batch of sends (`with adapter.batch(): ...`)."""

    def batch(self) -> AbstractContextManager[None]: ...


class SMTPAdapter:
    """E-mail over SMTP. Inside `with adapter.batch():` one connection carries every message of the batch (a TCP
    and TLS handshake and a login per message cost more than the message); outside a batch, one per message.
    A kept connection the server has dropped (idle timeout, 421) is replaced once: such a connection fails at
    its first command (MAIL FROM), before any of the message went out; and the Message-ID carries the
    idempotency key for the rare loss after the data.
    """

    def __init__(self, *, host: str, port: int, sender: str, user: str = "", password: str = "",
                 starttls: bool = False, timeout: float = 10.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout
        self._conn: smtplib.SMTP | None = None
        self._depth = 0
        self.connections = 0  # opened so far (for tests and the bench)

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._close()

    def _connect(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        self.connections += 1
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def _mail(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = message_id(message.idempotency_key)
        mail["X-Idempotency-Key"] = message.idempotency_key
        mail.set_content(message.body)
        return mail

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        mail = self._mail(message)
        try:
            return self._send(mail)
        finally:
            if self._depth == 0:
                self._close()

    def _send(self, mail: EmailMessage) -> DeliveryResult:
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                refused = self._conn.send_message(mail)
            except smtplib.SMTPRecipientsRefused as exc:
                return DeliveryResult(False, _short(exc), permanent=True)  # smtplib has reset the session
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # the server is closing the connection
                    self._drop()
                    if reused and attempt == 1:
                        continue
                return DeliveryResult(False, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:400],
                                      permanent=500 <= exc.smtp_code < 600)
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                self._drop()
                if reused and attempt == 1:
                    continue  # a kept connection went stale between messages: once more on a new one
                return DeliveryResult(False, _short(exc))
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()  # a timeout or a protocol error leaves the connection in an unknown state
                return DeliveryResult(False, _short(exc))
            if refused:
                return DeliveryResult(False, f"refused: {refused}"[:400], permanent=True)
            return DeliveryResult(True, provider_id=mail["Message-ID"])
        return DeliveryResult(False, "SMTP connection lost twice")  # pragma: no cover - the loop returns


class HttpGatewayAdapter:
    """POST a JSON message to an SMS or WeChat gateway; 2xx ok, 4xx permanent, 5xx/timeouts retried."""

    address_field = "to"

    def __init__(self, *, url: str, token: str = "", timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url, token, timeout

    def payload(self, message: OutgoingMessage) -> dict[str, str]:
        return {self.address_field: message.recipient, "text": message.body,
                "idempotency_key": message.idempotency_key}

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        data = json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": message.idempotency_key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (configured URL)
                raw = resp.read(65536)
        except urllib.error.HTTPError as exc:
            return DeliveryResult(False, f"HTTP {exc.code} from gateway", permanent=400 <= exc.code < 500
                                  and exc.code not in (408, 429))
        except TimeoutError:
            return DeliveryResult(False, f"gateway timed out after {self.timeout:g} s")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return DeliveryResult(False, f"gateway timed out after {self.timeout:g} s")
            return DeliveryResult(False, _short(exc))
        except (OSError, ValueError) as exc:
            return DeliveryResult(False, _short(exc))
        provider_id = None
        try:
            answer = json.loads(raw or b"{}")
            if isinstance(answer, dict) and answer.get("id") is not None:
                provider_id = str(answer["id"])
        except ValueError:
            pass
        return DeliveryResult(True, provider_id=provider_id)


class HttpSmsAdapter(HttpGatewayAdapter):
    address_field = "to"


class HttpWeChatAdapter(HttpGatewayAdapter):
    address_field = "openid"


class FileAdapter:
    """Write each message to folder/<channel>/<key>.eml|.json; the key as file name makes a rewrite a no-op."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def send(self, message: OutgoingMessage) -> DeliveryResult:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in message.idempotency_key)
        target_dir = self.folder / message.channel
        suffix = ".eml" if message.channel == "email" else ".json"
        target = target_dir / f"{safe}{suffix}"
        if target.exists():
            return DeliveryResult(True, provider_id=str(target))
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            if message.channel == "email":
                mail = EmailMessage()
                mail["To"] = message.recipient
                mail["Subject"] = message.subject
                mail["Message-ID"] = message_id(message.idempotency_key)
                mail.set_content(message.body)
                content = bytes(mail)
            else:
                content = json.dumps({"channel": message.channel, "to": message.recipient, "text": message.body,
                                      "idempotency_key": message.idempotency_key},
                                     ensure_ascii=False).encode("utf-8")
            tmp = target.with_suffix(suffix + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)  # atomic: a reader never sees half a message
        except OSError as exc:
            return DeliveryResult(False, _short(exc))
        return DeliveryResult(True, provider_id=str(target))


def from_settings(settings: Settings) -> dict[str, ChannelAdapter]:
    """One adapter per channel: the configured gateway, or the outbox folder when there is none."""
    files = FileAdapter(settings.outbox_dir)
    t = settings.gateway_timeout_s
    email: ChannelAdapter = (SMTPAdapter(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                                         user=settings.smtp_user, password=settings.smtp_password,
                                         starttls=settings.smtp_starttls, timeout=t)
                             if settings.smtp_host else files)
    sms: ChannelAdapter = (HttpSmsAdapter(url=settings.sms_url, token=settings.sms_token, timeout=t)
                           if settings.sms_url else files)
    wechat: ChannelAdapter = (HttpWeChatAdapter(url=settings.wechat_url, token=settings.wechat_token, timeout=t)
                              if settings.wechat_url else files)
    return {"email": email, "sms": sms, "wechat": wechat}
