"""The legacy-CSP bag attribute Exchange needs on an imported key (see :func:`set_csp_name`).

PFX files themselves are built by :func:`certkeeper.pki.pfx.build_pfx`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

from certkeeper.errors import InputError

MS_CSP_NAME_OID = "1.3.6.1.4.1.311.17.1"
SCHANNEL_CSP = "Microsoft RSA SChannel Cryptographic Provider"

_OID_DATA = "1.2.840.113549.1.7.1"
_OID_KEY_BAGS = ("1.2.840.113549.1.12.10.1.1", "1.2.840.113549.1.12.10.1.2")
_HASHES: dict[str, tuple[hashes.HashAlgorithm, int]] = {
    "1.3.14.3.2.26": (hashes.SHA1(), 64),  # noqa: S303 - legacy PFX MAC
    "2.16.840.1.101.3.4.2.1": (hashes.SHA256(), 64),
    "2.16.840.1.101.3.4.2.2": (hashes.SHA384(), 128),
    "2.16.840.1.101.3.4.2.3": (hashes.SHA512(), 128),
}


class _Node:
    """A DER element: tag byte and either raw content or children (constructed)."""

    def __init__(self, tag: int, content: bytes) -> None:
        self.tag = tag
        self.content = content
        self.children: list[_Node] | None = _parse_all(content) if tag & 0x20 else None

    def encode(self) -> bytes:
        body = (
            b"".join(child.encode() for child in self.children) if self.children is not None else self.content
        )
        return bytes([self.tag]) + _length(len(body)) + body


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _parse_one(data: bytes, offset: int) -> tuple[_Node, int]:
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise InputError("PFX: multi-byte DER tags are not expected")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0:
            raise InputError("PFX: indefinite lengths are not DER")
        size = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + size
    if end > len(data):
        raise InputError("PFX: truncated DER")
    return _Node(tag, data[offset:end]), end


def _parse_all(data: bytes) -> list[_Node]:
    nodes, offset = [], 0
    while offset < len(data):
        node, offset = _parse_one(data, offset)
        nodes.append(node)
    return nodes


def _parse(data: bytes) -> _Node:
    node, end = _parse_one(data, 0)
    if end != len(data):
        raise InputError("PFX: trailing bytes after DER")
    return node


def _oid(node: _Node) -> str:
    if node.tag != 0x06:
        raise InputError("PFX: expected an OBJECT IDENTIFIER")
    raw = node.content
    parts = [raw[0] // 40, raw[0] % 40] if raw[0] < 80 else [2, raw[0] - 80]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(part) for part in parts)


def _encode_oid(dotted: str) -> _Node:
    numbers = [int(part) for part in dotted.split(".")]
    out = bytearray([numbers[0] * 40 + numbers[1]])
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        out.extend(reversed(chunk))
    return _Node(0x06, bytes(out))


def _children(node: _Node) -> list[_Node]:
    if node.children is None:
        raise InputError("PFX: expected a constructed DER element")
    return node.children


def pkcs12_kdf(
    password: bytes,
    salt: bytes,
    iterations: int,
    purpose: int,
    size: int,
    algorithm: hashes.HashAlgorithm,
    block: int,
) -> bytes:
    """RFC 7292 Appendix B.2 key derivation (``purpose`` 3 = MAC key); ``password`` is UTF-8."""
    bmp = password.decode().encode("utf-16-be") + b"\x00\x00" if password else b""
    d = bytes([purpose]) * block

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        total = block * ((len(value) + block - 1) // block)
        return (value * (total // len(value) + 1))[:total]

    i = bytearray(stretch(salt) + stretch(bmp))
    out = b""
    while len(out) < size:
        digest = d + bytes(i)
        for _ in range(iterations):
            h = hashes.Hash(algorithm)
            h.update(digest)
            digest = h.finalize()
        out += digest
        b = int.from_bytes(stretch(digest)[:block], "big")
        for start in range(0, len(i), block):
            chunk = int.from_bytes(i[start : start + block], "big")
            i[start : start + block] = ((chunk + b + 1) % (1 << (block * 8))).to_bytes(block, "big")
    return out[:size]


def set_csp_name(pfx_der: bytes, password: bytes, csp_name: str = SCHANNEL_CSP) -> bytes:
    """Tag every private-key bag of ``pfx_der`` with the Microsoft CSP name and re-MAC it.

    Raises:
        InputError: the PFX is not in the layout cryptography and OpenSSL write (key bags in a
            plain ``data`` content info, a MAC present).
    """
    try:
        return _set_csp_name(pfx_der, password, csp_name)
    except (ValueError, IndexError, TypeError, UnicodeError) as exc:
        raise InputError(f"PFX: unexpected structure ({type(exc).__name__})") from None


def _set_csp_name(pfx_der: bytes, password: bytes, csp_name: str) -> bytes:
    pfx = _parse(pfx_der)
    version, auth_safe, mac_data = _children(pfx)
    if _oid(_children(auth_safe)[0]) != _OID_DATA:
        raise InputError("PFX: public-key integrity mode is not supported")
    auth_octets = _children(_children(auth_safe)[1])[0]
    contents = _parse(auth_octets.content)
    tagged = 0
    for info in _children(contents):
        info_children = _children(info)
        if _oid(info_children[0]) != _OID_DATA:
            continue  # encrypted data holds the certificates
        octets = _children(info_children[1])[0]
        safe_contents = _parse(octets.content)
        for bag in _children(safe_contents):
            parts = _children(bag)
            if _oid(parts[0]) not in _OID_KEY_BAGS:
                continue
            attribute = _Node(0x30, b"")
            bmp = _Node(0x1E, csp_name.encode("utf-16-be"))
            attribute.children = [_encode_oid(MS_CSP_NAME_OID), _Node(0x31, bmp.encode())]
            if len(parts) == 2:
                parts.append(_Node(0x31, b""))
            attributes = _children(parts[2])
            attributes[:] = [a for a in attributes if _oid(_children(a)[0]) != MS_CSP_NAME_OID] + [attribute]
            attributes.sort(key=lambda node: node.encode())  # DER: SET OF sorted by encoding
            tagged += 1
        octets.content = safe_contents.encode()
        octets.children = None
    if not tagged:
        raise InputError("PFX: no private key bag found")
    auth_octets.content = contents.encode()
    # recompute the MAC over the new AuthenticatedSafe (RFC 7292 §4: HMAC with a B.2-derived key)
    digest_info, salt, *rest = _children(mac_data)
    algorithm_oid = _oid(_children(_children(digest_info)[0])[0])
    if algorithm_oid not in _HASHES:
        raise InputError(f"PFX: unsupported MAC hash {algorithm_oid}")
    algorithm, block = _HASHES[algorithm_oid]
    iterations = int.from_bytes(rest[0].content, "big") if rest else 1
    key = pkcs12_kdf(password, salt.content, iterations, 3, algorithm.digest_size, algorithm, block)
    mac = hmac.HMAC(key, algorithm)
    mac.update(auth_octets.content)
    _children(digest_info)[1].content = mac.finalize()
    return _Node(0x30, b"".join(node.encode() for node in (version, auth_safe, mac_data))).encode()
