"""Pure X.509: keys, CSRs, parsing PEM/DER/PFX, building PFX, chain checks.

Everything here is a thin, typed layer over pyca/cryptography; it imports nothing from certkeeper
but :mod:`certkeeper.model` and :mod:`certkeeper.errors`, does no I/O, and turns cryptography's
``ValueError``s into :class:`~certkeeper.errors.InputError` messages that name the input
(``what``) and never echo its bytes.
"""
