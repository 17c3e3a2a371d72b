"""Encrypted, tamper-evident audit log of guardrail decisions (docs/audit.md).

Wiring::

    audit = AuditLog(settings.audit, keys, wrapper, metrics)   # AuditKeys + a KeyWrapper
    await audit.start()
    audit.record(AuditEvent.from_outcome(ctx, outcome))          # request path: O(1), no I/O
    await audit.close()                                          # drain on SIGTERM
"""

from ext_proc.audit.event import AUDITED_DECISIONS, AuditEvent
from ext_proc.audit.keys import (
    AuditKeyError,
    AuditKeys,
    KeyringKeyWrapper,
    KeyWrapper,
    LocalKeyWrapper,
    LocalSubjectKeyStore,
    SubjectKeyStore,
    load_audit_key_file,
    load_public_key,
    parse_audit_key,
    public_key_pem,
)
from ext_proc.audit.log import AuditLog, sinks_from_settings
from ext_proc.audit.reader import DecryptedRecord, read_records
from ext_proc.audit.sinks import FileSink, Sink, SpillFile, StdoutSink
from ext_proc.audit.verify import Problem, VerifyReport, verify_log

__all__ = [
    "AUDITED_DECISIONS",
    "AuditEvent",
    "AuditKeyError",
    "AuditKeys",
    "AuditLog",
    "DecryptedRecord",
    "FileSink",
    "KeyWrapper",
    "KeyringKeyWrapper",
    "LocalKeyWrapper",
    "LocalSubjectKeyStore",
    "Problem",
    "Sink",
    "SpillFile",
    "StdoutSink",
    "SubjectKeyStore",
    "VerifyReport",
    "load_audit_key_file",
    "load_public_key",
    "parse_audit_key",
    "public_key_pem",
    "read_records",
    "sinks_from_settings",
    "verify_log",
]
