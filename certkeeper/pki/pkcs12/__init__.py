"""PKCS#12 (PFX, RFC 7292): building the files Windows, IIS and Exchange import, and reading them.

- :mod:`.build`: :func:`~.build.build_pfx` (AES-256 or the 3DES/SHA-1 legacy profile Windows
  Server 2016 needs) and :func:`~.build.generate_password`.
- :mod:`.structure`: the one DER reader of the PFX structure (pyasn1 with pyasn1-modules' RFC 7292
  types): the iteration counts a file declares, read before OpenSSL derives anything, and the
  Microsoft CSP bag attribute Exchange needs on an imported key.

Opening a PFX (key, leaf, chain) is :func:`certkeeper.pki.parse.load_pfx`, through cryptography.
"""
