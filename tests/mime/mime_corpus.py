"""A corpus of ordinary messages, built with the email package, for differential tests."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


def _msg(subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "Alice <alice@example.com>"
    m["To"] = "bob@example.org"
    m["Subject"] = subject
    return m


def corpus() -> list[bytes]:
    out: list[bytes] = []
    plain = _msg("plain")
    plain.set_content("Hello Bob,\nsee you.\n")
    out.append(plain.as_bytes())
    utf8 = _msg("utf8")
    utf8.set_content("Grüße aus Köln — ünïcødé\n" * 30)  # quoted-printable or base64
    out.append(utf8.as_bytes())
    latin = _msg("latin1")
    latin.set_content("café crème\n", charset="iso-8859-1", cte="quoted-printable")
    out.append(latin.as_bytes())
    b64 = _msg("b64")
    b64.set_content("long body line " * 200 + "\n", cte="base64")
    out.append(b64.as_bytes())
    alt = _msg("alternative")
    alt.set_content("text version\n")
    alt.add_alternative("<p>html version</p>\n", subtype="html")
    out.append(alt.as_bytes())
    html_only = _msg("html only")
    html_only.set_content("<p>only html</p>\n", subtype="html")
    out.append(html_only.as_bytes())
    att = _msg("attachment")
    att.set_content("see attached\n")
    att.add_attachment(b"\x00\x01binary" * 100, maintype="application", subtype="octet-stream",
                       filename="data.bin")
    out.append(att.as_bytes())
    text_att = _msg("text attachment")
    text_att.set_content("notes attached\n")
    text_att.add_attachment("some notes\n", filename="notes.txt")
    out.append(text_att.as_bytes())
    related = _msg("related")
    related.set_content("plain part\n")
    related.add_alternative("<p><img src='cid:logo'></p>\n", subtype="html")
    html_part = related.get_payload()[1]
    html_part.add_related(b"\x89PNG....", maintype="image", subtype="png", cid="<logo>",
                          filename="logo.png")
    out.append(related.as_bytes())
    unnamed_inline = _msg("inline image without name")
    unnamed_inline.set_content("pic below\n")
    unnamed_inline.add_related(b"GIF89a", maintype="image", subtype="gif", cid="<p1>")
    out.append(unnamed_inline.as_bytes())
    intl = _msg("rfc2231 filename")
    intl.set_content("résumé attached\n")
    intl.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                        filename=("utf-8", "", "résumé très long nom de fichier.pdf"))
    out.append(intl.as_bytes())
    inner = _msg("inner message")
    inner.set_content("forwarded body\n")
    inner.add_attachment(b"zip", maintype="application", subtype="zip", filename="in.zip")
    fwd = MIMEMultipart()
    fwd["Subject"] = "forward"
    fwd.attach(MIMEText("see the forwarded message\n"))
    fwd.attach(MIMEMessage(inner))
    out.append(fwd.as_bytes(policy=email.policy.SMTP))
    inline_fwd = MIMEMultipart()
    inline_fwd.attach(MIMEMessage(_plain_inner()))
    out.append(inline_fwd.as_bytes(policy=email.policy.SMTP))
    digest = MIMEMultipart("digest")
    digest.attach(MIMEMessage(_plain_inner()))
    digest.attach(MIMEMessage(_plain_inner()))
    out.append(digest.as_bytes(policy=email.policy.SMTP))
    named_ct = MIMEMultipart()
    named_ct.attach(MIMEText("body\n"))
    app = MIMEApplication(b"data", "octet-stream")
    app.set_param("name", "file.dat")
    named_ct.attach(app)
    out.append(named_ct.as_bytes(policy=email.policy.SMTP))
    inline_named = MIMEMultipart()
    inline_named.attach(MIMEText("body\n"))
    img = MIMEBase("image", "jpeg")
    img.set_payload(b"\xff\xd8\xff")
    img.add_header("Content-Disposition", "inline", filename="photo.jpg")
    inline_named.attach(img)
    out.append(inline_named.as_bytes(policy=email.policy.SMTP))
    nested = MIMEMultipart("mixed")
    alt2 = MIMEMultipart("alternative")
    alt2.attach(MIMEText("nested plain\n"))
    alt2.attach(MIMEText("<b>nested</b>\n", "html"))
    nested.attach(alt2)
    nested.attach(MIMEText("trailer\n"))
    out.append(nested.as_bytes(policy=email.policy.SMTP))
    attached_text_only = MIMEMultipart()
    disp = MIMEText("only an attached text\n")
    disp.add_header("Content-Disposition", "attachment", filename="a.txt")
    attached_text_only.attach(disp)
    attached_text_only.attach(MIMEText("<i>html</i>\n", "html"))
    out.append(attached_text_only.as_bytes(policy=email.policy.SMTP))
    # hand-written: LF-only line ends, quoted boundary with spaces, preamble and epilogue
    out.append(
        b"From: a@b.test\nContent-Type: multipart/mixed;\n boundary=\"a b:c\"\n\n"
        b"preamble\n--a b:c\nContent-Type: text/plain; charset=utf-8\n\nhi \xc3\xa9\n"
        b"--a b:c\nContent-Type: image/png; name=\"x.png\"\nContent-Transfer-Encoding: base64\n"
        b"\niVBORw0K\n--a b:c--\nepilogue\n")
    out.append(b"Subject: no mime headers\r\n\r\njust text\r\n")
    out.append(b"Subject: no body")
    return out


def _plain_inner() -> EmailMessage:
    m = _msg("inner")
    m.set_content("inner text\n")
    return m
