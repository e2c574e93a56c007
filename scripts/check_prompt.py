#!/usr/bin/env python3
"""Checks nnsign's no-echo passphrase prompt on a real pseudo-terminal, which `cargo test` cannot
give a child process: `keygen --protect` asks twice, `pack --sign` asks once, the passphrase is
never echoed, and a wrong one is refused with exit code 1; `pack --passphrase-prompt` asks twice
and encrypts, and `verify-load` and `unpack` ask for an artifact's passphrase.

    python3 scripts/check_prompt.py target/debug/nnsign
"""
import os, pty, sys, tempfile, termios, time

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/nnsign")
TINY = os.path.abspath("tests/fixtures/tiny.npy")
SECRET = b"correct horse battery staple"


def run(args, answers):
    """Runs nnsign on a pty, typing each answer after a prompt; returns (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(BIN, [BIN] + args)
    out = b""
    for answer in answers:
        while not out.rstrip(b"|").endswith(b": "):
            chunk = os.read(fd, 1024)
            if not chunk:
                raise SystemExit(f"nnsign {args[0]} exited before asking: {out!r}")
            out += chunk
        # The prompt may appear a moment before echo is turned off: typing then would echo the
        # answer (as a too-fast typist would see it). Wait until the terminal stops echoing.
        for _ in range(500):
            if not termios.tcgetattr(fd)[3] & termios.ECHO:
                break
            time.sleep(0.01)
        os.write(fd, answer + b"\n")
        out += b"|"
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def key_is_encrypted(path, passphrase):
    """True when the PEM key needs `passphrase` (read with the `cryptography` package)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    data = open(path, "rb").read()
    try:
        load_pem_private_key(data, password=None)
        return False
    except TypeError:  # "Password was not given but private key is encrypted"
        return load_pem_private_key(data, password=passphrase) is not None


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        # What the terminal showed ("|" marks where an answer was typed), and the exit code.
        print(f"  exit code {code}; terminal: {out!r}")
        sys.exit(1)


os.chdir(tempfile.mkdtemp())
code, out = run(["keygen", "-o", "p", "--protect"], [SECRET, SECRET])
check(code == 0 and out.count("passphrase") >= 2, "keygen --protect asks twice and succeeds")
check(key_is_encrypted("p.key", SECRET), "the key is encrypted, and the passphrase opens it")
check(oct(os.stat("p.key").st_mode & 0o777) == "0o600", "the key is mode 0600")
code, out = run(["pack", TINY, "--sign", "p.key", "-o", "t.nns"], [SECRET])
check(code == 0 and "signed by key" in out, "pack --sign asks for the passphrase and signs")
check(SECRET.decode() not in out, "the passphrase is never echoed")
code, out = run(["pack", TINY, "--sign", "p.key", "-o", "u.nns"], [b"wrong"])
check(code == 1 and "wrong passphrase" in out and not os.path.exists("u.nns"), "a wrong passphrase: exit 1, no output")
code, out = run(["keygen", "-o", "q", "--protect"], [SECRET, b"different"])
check(code == 2 and not os.path.exists("q.key"), "mismatched passphrases: exit 2, no key written")
code, out = run(["pack", TINY, "--passphrase-prompt", "-o", "e.nns"], [SECRET, SECRET])
check(code == 0 and "encrypted to a passphrase" in out and SECRET.decode() not in out,
      "pack --passphrase-prompt asks twice and encrypts")
code, out = run(["pack", TINY, "--passphrase-prompt", "-o", "f.nns"], [SECRET, b"different"])
check(code == 2 and not os.path.exists("f.nns"), "mismatched artifact passphrases: exit 2, no artifact")
code, out = run(["verify-load", "e.nns", "--allow-unsigned"], [SECRET])
check(code == 0 and "passphrase for e.nns" in out and SECRET.decode() not in out,
      "verify-load asks for the artifact's passphrase and opens it")
code, out = run(["unpack", "e.nns", "--allow-unsigned", "-o", "w.safetensors"], [b"wrong"])
check(code == 7 and "does not open" in out and not os.path.exists("w.safetensors"),
      "unpack with a wrong passphrase: exit 7, no output")
