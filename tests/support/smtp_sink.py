#!/usr/bin/python3
"""A real SMTP server (aiosmtpd) for mailotp's black-box tests.

Stores each accepted message as an .eml file in --dir (written to a temporary
name and renamed, so a reader never sees half a file), prints
"listening on HOST:PORT" once it accepts connections, and runs until killed.
"""
import argparse
import asyncio
import os
import ssl
import sys
import uuid

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, directory, reject, delay):
        self.directory = directory
        self.reject = set(reject)
        self.delay = delay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        name = uuid.uuid4().hex
        tmp = os.path.join(self.directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-From: %s\r\n" % envelope.mail_from).encode())
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(("X-Authenticated: %s\r\n" % (session.authenticated and "yes" or "no")).encode())
            tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
            f.write(("X-TLS: %s\r\n" % (tls and "yes" or "no")).encode())
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.directory, name + ".eml"))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--auth", help="user:password required before MAIL")
    p.add_argument("--reject", action="append", default=[], help="recipient answered with 550")
    p.add_argument("--delay", type=float, default=0, help="seconds to wait before answering DATA")
    args = p.parse_args()

    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            return AuthResult(success=ok)

        kwargs.update(authenticator=authenticator, auth_required=True,
                      auth_require_tls=args.mode != "plain")
    if args.mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)

    handler = Handler(args.dir, args.reject, args.delay)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="localhost", **kwargs),
        host=args.host, port=args.port,
        ssl=context if args.mode == "tls" else None))
    host, port = server.sockets[0].getsockname()[:2]
    print("listening on %s:%d" % (host, port), flush=True)
    loop.run_forever()


if __name__ == "__main__":
    sys.exit(main())
