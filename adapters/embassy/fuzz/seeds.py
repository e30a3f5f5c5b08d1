#!/usr/bin/env python3
"""Writes the fuzz seeds: a P-256 CA (seeds/anchor.der, built into the targets) and inputs
for the `verifier` target that reach the deep paths (valid chains, valid CertificateVerify
signatures). Needs the `cryptography` package. Run once from this directory; the outputs are
committed, so fuzzing does not need it."""
import datetime, ipaddress, os, struct
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
T1 = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
NOW = int(datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc).timestamp())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject, key, issuer, issuer_key, ca, sans=(), eku=None, hash_alg=hashes.SHA256()):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(T0).not_valid_after(T1)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    alg = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hash_alg
    return b.sign(issuer_key, alg).public_bytes(serialization.Encoding.DER)


def u16(b):
    return struct.pack(">H", len(b)) + b


def seed(path, flags, host, chain, transcript, scheme, sig, order, anchor=None):
    out = bytes([flags]) + struct.pack(">Q", NOW) + bytes([len(host)]) + host
    if flags & 1:
        out += u16(anchor)
    out += bytes([len(chain)]) + b"".join(u16(c) for c in chain)
    out += transcript + struct.pack(">H", scheme) + u16(sig) + bytes([order])
    with open(path, "wb") as f:
        f.write(out)


def cv(key, transcript, hash_alg):
    msg = b"\x20" * 64 + b"TLS 1.3, server CertificateVerify\x00" + transcript
    return key.sign(msg, ec.ECDSA(hash_alg))


os.makedirs("seeds/verifier", exist_ok=True)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = cert("fuzz root", ca_key, "fuzz root", ca_key, True)
open("seeds/anchor.der", "wb").write(ca)
inter_key = ec.generate_private_key(ec.SECP384R1())
inter = cert("fuzz intermediate", inter_key, "fuzz root", ca_key, True)
sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
leaf_key = ec.generate_private_key(ec.SECP256R1())
leaf = cert("localhost", leaf_key, "fuzz root", ca_key, False, sans, [ExtendedKeyUsageOID.SERVER_AUTH])
leaf3 = cert("localhost", leaf_key, "fuzz intermediate", inter_key, False, sans, hash_alg=hashes.SHA384())
p384_key = ec.generate_private_key(ec.SECP384R1())
leaf384 = cert("localhost", p384_key, "fuzz root", ca_key, False, sans)
ed_key = ed25519.Ed25519PrivateKey.generate()
leaf_ed = cert("localhost", ed_key, "fuzz root", ca_key, False, sans)
pin_key = ec.generate_private_key(ec.SECP256R1())
pinned = cert("localhost", pin_key, "localhost", pin_key, True, sans)
t = bytes(range(32))

seed("seeds/verifier/direct", 2, b"localhost", [leaf], t, 0x0403, cv(leaf_key, t, hashes.SHA256()), 0)
seed("seeds/verifier/intermediate", 2, b"localhost", [leaf3, inter], t, 0x0403, cv(leaf_key, t, hashes.SHA256()), 0)
seed("seeds/verifier/ip", 0, b"127.0.0.1", [leaf], t, 0x0403, cv(leaf_key, t, hashes.SHA256()), 0)
seed("seeds/verifier/p384", 2, b"localhost", [leaf384], t, 0x0503, cv(p384_key, t, hashes.SHA384()), 0)
seed("seeds/verifier/cv_first", 2, b"localhost", [leaf], t, 0x0403, cv(leaf_key, t, hashes.SHA256()), 1)
seed("seeds/verifier/ed25519", 2, b"localhost", [leaf_ed], t, 0x0807, ed_key.sign(t), 0)
seed("seeds/verifier/pinned", 3, b"localhost", [pinned], t, 0x0403, cv(pin_key, t, hashes.SHA256()), 0, anchor=pinned)

# --- server_flight: a plausible first server flight (the client's randomness is fixed, the
# server's key share is a real P-256 point, so the fuzzer starts past ServerHello parsing and
# the key schedule; the encrypted records that follow cannot decrypt).
os.makedirs("seeds/server_flight", exist_ok=True)
point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
ext = (struct.pack(">HHH", 0x002B, 2, 0x0304)
       + struct.pack(">HHHH", 0x0033, 4 + len(point), 0x0017, len(point)) + point)
body = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x13\x01" + b"\x00"
        + struct.pack(">H", len(ext)) + ext)
hello = b"\x02" + struct.pack(">I", len(body))[1:] + body
flight = (b"\x16\x03\x03" + struct.pack(">H", len(hello)) + hello
          + b"\x14\x03\x03\x00\x01\x01"
          + b"\x17\x03\x03\x00\x40" + os.urandom(64))
for step, tag in ((255, "whole"), (7, "pieces")):
    with open(f"seeds/server_flight/hello_{tag}", "wb") as f:
        f.write(bytes([step]) + flight)
