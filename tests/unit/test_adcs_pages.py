"""Pure parts of the AD CS issuer: reading certsrv pages, PKCS#7 chains, CSR checks."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID, ObjectIdentifier

from certkeeper.errors import IssuanceRejected
from certkeeper.issuers.adcs import (
    build_chain,
    check_csr,
    disposition_message,
    load_pkcs7,
    parse_submission,
)
from tests.fixtures.certsrv import AdcsCa

UPN = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def csr_with(*extensions: x509.ExtensionType) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com")]))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


@pytest.mark.parametrize(("page", "outcome", "request_id", "message"), [
    ('<A Href="certnew.cer?ReqID=17&amp;Enc=b64">Download</A>', "issued", 17, "issued"),
    ("Certificate Pending ... Your Request Id is 18. Please return", "pending", 18,
     "Taken Under Submission"),
    ('Your Request Id is 19. The disposition message is "Denied by Policy Module  0x80094800, X".',
     "denied", 19, "Denied by Policy Module  0x80094800, X"),
    ("<html>Welcome to the intranet</html>", "error", None, "Welcome to the intranet"),
])
def test_parse_submission(page: str, outcome: str, request_id: int | None, message: str) -> None:
    submission = parse_submission(page)
    assert (submission.outcome, submission.request_id, submission.message) == (outcome, request_id, message)


def test_disposition_message_from_certnew_cer_table() -> None:
    page = ("<TR><TD><B>Disposition message:</B></TD>\r\n\t\t<TD>Taken Under Submission</TD></TR>\r\n"
            "<TR><TD>Other</TD></TR>")
    assert disposition_message(page) == "Taken Under Submission"


@pytest.mark.parametrize("armour", ["PKCS7", "CERTIFICATE", None])
def test_load_pkcs7_any_armour_or_der(armour: str | None) -> None:
    ca = AdcsCa()
    der = pkcs7.serialize_certificates([ca.issuing, ca.root], Encoding.DER)
    if armour is None:
        data = der
    else:
        body = base64.encodebytes(der)
        data = f"-----BEGIN {armour}-----\r\n".encode() + body + f"-----END {armour}-----\r\n".encode()
    assert set(load_pkcs7(data)) == {ca.issuing, ca.root}


def test_build_chain_by_signature_not_just_name() -> None:
    ca = AdcsCa()
    impostor = AdcsCa()  # same names, other keys
    csr = x509.load_pem_x509_csr(csr_with(x509.SubjectAlternativeName([x509.DNSName("mail.contoso.com")])))
    leaf = ca.sign(csr, "WebServer")
    assert build_chain(leaf, [impostor.issuing, impostor.root]) is None
    assert build_chain(leaf, [ca.root, ca.issuing]) == ([ca.issuing], [ca.root])


@pytest.mark.parametrize(("extension", "message"), [
    (x509.BasicConstraints(ca=True, path_length=None), "CA certificate"),
    (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SMARTCARD_LOGON]), "smart card logon"),
    (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), "any purpose"),
    (x509.SubjectAlternativeName([x509.DNSName("mail.contoso.com"),
                                  x509.OtherName(UPN, b"\x0c\x11admin@contoso.com")]), "OtherName"),
])
def test_check_csr_refuses_logon_shapes(extension: x509.ExtensionType, message: str) -> None:
    with pytest.raises(IssuanceRejected, match=message):
        check_csr(csr_with(extension))


def test_check_csr_accepts_a_web_server_csr() -> None:
    pem = csr_with(x509.SubjectAlternativeName([x509.DNSName("mail.contoso.com")]),
                   x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]))
    assert check_csr(pem).subject.rfc4514_string() == "CN=mail.contoso.com"
