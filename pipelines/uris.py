"""Locations never carry credentials: `s3://KEY:SECRET@bucket/...` is refused.

A location is written into stage manifests, logs, the report and the command lines the logs
keep, so a secret inside one would be copied everywhere the run goes. Credentials come from
the environment or a profile (storage.py). This module finds a URI's userinfo (the part of
its authority before "@", RFC 3986) and refuses it, naming the key or argument with the
userinfo masked, so the refusal itself repeats no secret.

Any userinfo is refused (a token is often the user part alone: `https://TOKEN@host`), except
a bare name, without ":", for the schemes where it names a container or a login rather than a
secret: Azure's `abfs://container@account...` and `sftp://user@host`.
"""

from __future__ import annotations

import re

# scheme "://" authority: the authority ends at the first "/", "?" or "#"
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")
BARE_NAME_SCHEMES = frozenset({"abfs", "abfss", "az", "adl", "sftp", "ssh"})
HINT = (
    "pass credentials through the environment (AWS_*, GOOGLE_*, AZURE_*, or the variable a "
    "config's api_key_env names) or a profile (AWS_PROFILE, gcloud auth), never inside a location"
)


class CredentialsInLocation(ValueError):
    """A location with a user:password (or a token) in it; the message masks it."""


def userinfo(location: str) -> str | None:
    """The userinfo of a URI that must not have one (None when it has none, or an allowed bare name)."""
    match = _URI.match(location)
    if match is None:
        return None
    authority = match["authority"]
    if "@" in authority:
        found = authority.rpartition("@")[0]
        bare_name = ":" not in found and match["scheme"].lower() in BARE_NAME_SCHEMES
        return None if bare_name else found
    # A secret with an unescaped "/" (common in AWS keys) ends the authority early:
    # `s3://KEY:abc/def@bucket` has authority "KEY:abc", which no host:port looks like.
    _, colon, port = authority.rpartition(":")
    if colon and not port.isdigit() and not authority.startswith("["):
        rest = location.split("://", 1)[1]
        return rest.rpartition("@")[0] or authority
    return None


def masked(location: str) -> str:
    """`location` with its userinfo shown as ***."""
    found = userinfo(location)
    if found is None:
        return location
    scheme, rest = location.split("://", 1)
    return f"{scheme}://***{rest[len(found) :]}"


def check(location: str) -> str:
    """`location` itself, or CredentialsInLocation showing it masked."""
    if isinstance(location, str) and userinfo(location) is not None:
        raise CredentialsInLocation(f"{masked(location)} has credentials in it; {HINT}")
    return location


def credentials_in(document) -> str | None:
    """The lines of a config error for every location in a parsed config that has credentials
    (None when none has): each key with its value masked, then what to do instead."""
    found = _in_document(document)
    if not found:
        return None
    return "\n".join([*(f"  {line} has credentials in it" for line in found), f"  {HINT}"])


def _in_document(document, key: str = "") -> list[str]:
    """One line per string in a parsed config (mappings, lists) that is a URI with credentials:
    "KEY: MASKED", the key dotted as config errors name keys (`ingest.sources[0].paths[1]`)."""
    if isinstance(document, dict):
        return [line for name, value in document.items() for line in _in_document(value, _dotted(key, name))]
    if isinstance(document, list):
        return [line for index, value in enumerate(document) for line in _in_document(value, f"{key}[{index}]")]
    if isinstance(document, str) and userinfo(document) is not None:
        return [f"{key or '(top level)'}: {masked(document)}"]
    return []


def _dotted(key: str, name) -> str:
    return f"{key}.{name}" if key else str(name)
