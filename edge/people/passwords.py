"""Password hashes with scrypt (``hashlib.scrypt``), their parameters stored with them.

``PasswordHash.make(password)`` hashes with a new 16-byte salt and the current parameters
(``N``, ``R``, ``P``: 128 * R * N = 16 MiB of memory); ``hash.verify(password)`` compares in
constant time, with the parameters the hash was made with, so the defaults can change without
invalidating stored hashes. ``check_password`` refuses an empty, short or overlong password.
Passwords are compared after Unicode NFKC normalisation. A verification takes tens of
milliseconds of CPU: call it off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass

from edge.people.errors import PeopleError

N = 2**14
R = 8
P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 64 * 1024 * 1024
"""The most memory a stored hash may ask for (a file asking more is refused, not obeyed)."""
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def scrypt_memory(n: int, r: int, p: int) -> int:
    """Bytes scrypt needs with these parameters (OpenSSL's count: 128 r (N + p + 2))."""
    return 128 * r * (n + p + 2)


def check_password(password: str) -> str:
    """The password as it is hashed (NFKC), or ``PeopleError`` saying what is wrong with it."""
    if not password:
        raise PeopleError("the password is empty")
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < MIN_PASSWORD:
        raise PeopleError(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(normal) > MAX_PASSWORD:
        raise PeopleError(f"the password is longer than {MAX_PASSWORD} characters")
    return normal


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str, *, n: int = N, r: int = R, p: int = P) -> PasswordHash:
        salt = secrets.token_bytes(SALT_BYTES)
        normal = check_password(password)
        return cls(n, r, p, salt, _scrypt(normal, salt, n, r, p, HASH_BYTES))

    def verify(self, password: str) -> bool:
        """Whether ``password`` is the one hashed (constant-time comparison)."""
        normal = unicodedata.normalize("NFKC", password)
        fits = len(normal) <= MAX_PASSWORD  # a longer one was never hashed: hash a part, refuse
        length = len(self.digest)
        candidate = _scrypt(normal[:MAX_PASSWORD], self.salt, self.n, self.r, self.p, length)
        return hmac.compare_digest(candidate, self.digest) and fits


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=scrypt_memory(n, r, p),
        dklen=length,
    )
