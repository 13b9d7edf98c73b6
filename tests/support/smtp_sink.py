#!/usr/bin/python3
"""A real SMTP server for the tests (aiosmtpd, Debian package python3-aiosmtpd).

Usage: smtp_sink.py PORT OUTDIR [FAIL_FIRST [TLS_DIR]]
Every accepted message is written to OUTDIR/NNNNNN.eml (and its envelope recipients to
NNNNNN.rcpt) atomically. The first FAIL_FIRST DATA commands are answered 451 (a transient
4xx); recipients at @reject.test get 550 at RCPT; a recipient whose local part starts with
"busy" gets 450 (mailbox busy) at its first RCPT, one starting with "throttle" gets a 451
rate-limit reply at its first RCPT. RCPT counts per address go to OUTDIR/rcpt.log.
With TLS_DIR (holding cert.pem and key.pem) STARTTLS is offered and required before MAIL.
Prints READY when listening; stops on SIGTERM/SIGINT.
"""
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_first = fail_first
        self.n = 0
        self.seen = {}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Offer RFC 2920 pipelining as Postfix does (aiosmtpd reads pipelined commands in order).
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        a = address.lower()
        self.seen[a] = self.seen.get(a, 0) + 1
        with open(os.path.join(self.out, "rcpt.log"), "a") as f:
            f.write(a + "\n")
        if a.endswith("@reject.test"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % a
        if a.startswith("busy") and self.seen[a] == 1:
            return "450 4.2.1 mailbox busy, try again later"
        if a.startswith("throttle") and self.seen[a] == 1:
            return "451 4.7.1 Too many messages, rate limit exceeded, slow down"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 temporary failure, try again later"
        self.n += 1
        base = os.path.join(self.out, "%06d" % self.n)
        with open(base + ".rcpt.tmp", "w") as f:
            f.write("\n".join(envelope.rcpt_tos))
        os.rename(base + ".rcpt.tmp", base + ".rcpt")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 accepted"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    fail_first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    tls = {}
    if len(sys.argv) > 4:
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(sys.argv[4], "cert.pem"), os.path.join(sys.argv[4], "key.pem"))
        tls = {"tls_context": ctx, "require_starttls": True}
    controller = Controller(Sink(out, fail_first), hostname="127.0.0.1", port=port, **tls)
    controller.start()
    print("READY", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
