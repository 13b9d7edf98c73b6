#!/usr/bin/python3
"""Verifies a message's DKIM signature (dkimpy, Debian package python3-dkim) against a given
public key instead of DNS.

Usage: dkim_verify.py MESSAGE_FILE SELECTOR DOMAIN PUBLIC_KEY_BASE64
Prints "pass" and exits 0 when the signature verifies; prints "fail" and exits 1 otherwise
(also when the signature names another selector or domain).
"""
import sys

import dkim


def main():
    path, selector, domain, key = sys.argv[1:5]
    expected = ("%s._domainkey.%s." % (selector, domain)).encode()
    record = ("v=DKIM1; k=rsa; p=%s" % key).encode()

    def dns(name, timeout=5):
        return record if name == expected or name + b"." == expected else None

    with open(path, "rb") as f:
        ok = dkim.verify(f.read(), dnsfunc=dns)
    print("pass" if ok else "fail")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
