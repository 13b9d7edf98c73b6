#!/usr/bin/env python3
"""Writes a Maildir of N mixed messages for bench/imap.sh: new inquiries (some with
attachments), replies to wave messages (In-Reply-To <wave-bench.K@crm.example.com>),
RFC 3464 bounces and RFC 3834 auto-replies, 2-50 KB each. Usage: gen_mailbox.py DIR N"""
import base64, os, random, sys, time

root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
for sub in ("new", "cur", "tmp"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
WORDS = "price list offer delivery order contract invoice meeting product demo support discount warehouse".split()

def text(size):
    out, total = [], 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12))
        out.append(line)
        total += len(line) + 2
    return "\r\n".join(out)

def msg(i):
    size = rng.randint(2_000, 50_000)
    kind = rng.random()
    date = "Fri, 27 Nov 2026 10:00:00 +0300"
    if kind < 0.40:
        h = f"From: Sender {i} <sender{i}@client{i % 500}.example>\r\nTo: sales@crm.example.com\r\nSubject: Inquiry {i}\r\nDate: {date}\r\nMessage-ID: <inq-{i}@client.example>\r\n"
        if rng.random() < 0.3:
            att = base64.encodebytes(os.urandom(max(size // 2, 1000))).decode().replace("\n", "\r\n")
            return h + f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text(size // 3)}\r\n--b{i}\r\nContent-Type: application/pdf; name="offer.pdf"\r\nContent-Disposition: attachment; filename="offer.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n{att}--b{i}--\r\n'
        return h + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text(size) + "\r\n"
    if kind < 0.65:
        k = rng.randint(0, 999)
        return f"From: Member {k} <member{k}@client.example>\r\nTo: news@crm.example.com\r\nSubject: Re: November news\r\nDate: {date}\r\nMessage-ID: <rep-{i}@client.example>\r\nIn-Reply-To: <wave-bench.{k}@crm.example.com>\r\nReferences: <wave-bench.{k}@crm.example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nInterested.\r\n\r\n> {text(size)}\r\n"
    if kind < 0.80:
        k = rng.randint(0, 999)
        return (f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.crm.example.com (Mail Delivery System)\r\nTo: news@crm.example.com\r\nSubject: Undelivered Mail Returned to Sender\r\nDate: {date}\r\nMessage-ID: <dsn-{i}@mx.crm.example.com>\r\nMIME-Version: 1.0\r\n"
                f'Content-Type: multipart/report; report-type=delivery-status; boundary="r{i}"\r\n\r\n--r{i}\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n\r\n--r{i}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.crm.example.com\r\n\r\n'
                f"Final-Recipient: rfc822; gone{i}@client.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--r{i}\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <wave-bench.{k}@crm.example.com>\r\nSubject: November news\r\n\r\n--r{i}\r\nContent-Type: text/plain\r\n\r\n{text(size)}\r\n--r{i}--\r\n")
    return f"From: Away {i} <away{i}@client.example>\r\nTo: sales@crm.example.com\r\nSubject: Automatic reply: Inquiry\r\nDate: {date}\r\nMessage-ID: <ooo-{i}@client.example>\r\nAuto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text(size)}\r\n"

t = int(time.time())
total = 0
for i in range(n):
    data = msg(i).encode()
    total += len(data)
    name = f"{t}.M{i}P1.bench,S={len(data)}"
    with open(os.path.join(root, "new", name), "wb") as f:
        f.write(data)
print(f"{n} messages, {total / 1e6:.1f} MB", file=sys.stderr)
