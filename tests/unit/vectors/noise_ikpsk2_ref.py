#!/usr/bin/env python3
# Independent reference for Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b (Noise rev 34),
# built on Python's hashlib/hmac and the "cryptography" package, no libsodium.
# Reproduces the cacophony vector used in tests/unit/test_handshake.c (messages
# and first transport message) and prints the final handshake hash h.
#
# The "handshake_hash" field of mcginty/snow tests/vectors/cacophony.txt for
# this protocol (001fca5f...) equals h right after msg2's "e" token, not the
# final h; for NN it equals h after msg1. This script shows both.
import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def H(d):
    return hashlib.blake2b(d).digest()


def hkdf(ck, ikm, n):
    t = hmac.new(ck, ikm, hashlib.blake2b).digest()
    o1 = hmac.new(t, b"\x01", hashlib.blake2b).digest()
    o2 = hmac.new(t, o1 + b"\x02", hashlib.blake2b).digest()
    o3 = hmac.new(t, o2 + b"\x03", hashlib.blake2b).digest()
    return [o1, o2, o3][:n]


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def dh(priv, p):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(p))


def nonce(n):
    return b"\0" * 4 + n.to_bytes(8, "little")


class Symmetric:
    def __init__(self, name, prologue):
        self.h = name.ljust(64, b"\0")
        self.ck = self.h
        self.k, self.n, self.trace = None, 0, []
        self.mix_hash(prologue)

    def mix_hash(self, d):
        self.h = H(self.h + d)
        self.trace.append(self.h)

    def mix_key(self, ikm):
        self.ck, t = hkdf(self.ck, ikm, 2)
        self.k, self.n = t[:32], 0

    def mix_key_and_hash(self, ikm):
        self.ck, th, tk = hkdf(self.ck, ikm, 3)
        self.mix_hash(th)
        self.k, self.n = tk[:32], 0

    def encrypt_and_hash(self, pt):
        c = ChaCha20Poly1305(self.k).encrypt(nonce(self.n), pt, self.h)
        self.n += 1
        self.mix_hash(c)
        return c


u = bytes.fromhex
isk = u("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1")
iek = u("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
rsk = u("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
rek = u("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
psk = u("54686973206973206d7920417573747269616e20706572737065637469766521")

s = Symmetric(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b", b"John Galt")
s.mix_hash(pub(rsk))
e = pub(iek)
s.mix_hash(e)
s.mix_key(e)
s.mix_key(dh(iek, pub(rsk)))
msg1 = e + s.encrypt_and_hash(pub(isk))
s.mix_key(dh(isk, pub(rsk)))
msg1 += s.encrypt_and_hash(b"Ludwig von Mises")
e = pub(rek)
s.mix_hash(e)
h_after_msg2_e = s.h
s.mix_key(e)
s.mix_key(dh(iek, e))
s.mix_key(dh(isk, e))
s.mix_key_and_hash(psk)
msg2 = e + s.encrypt_and_hash(b"Murray Rothbard")
k1, _ = hkdf(s.ck, b"", 2)
print("msg1", msg1.hex())
print("msg2", msg2.hex())
print("final h", s.h.hex())
print("h after msg2 e (snow's handshake_hash)", h_after_msg2_e.hex())
print("transport 0", ChaCha20Poly1305(k1[:32]).encrypt(nonce(0), b"F. A. Hayek", b"").hex())
