"""SuperOffice field names, limits and value coercions shared by the target's reads and writes.

The Web API's JSON casing is not guaranteed and its archive values arrive as display strings, so every
carrier member is read with :func:`get` and every archive value goes through :func:`blank` /
:func:`as_id` / :func:`as_bool`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "BASE_COLUMNS",
    "FAST_FIELDS",
    "ID_CHUNK",
    "MOBILE_COLUMN",
    "NAME_PREFIX_READS",
    "PAGE_SIZE",
    "PERSON_FIELDS",
    "PERSON_LISTS",
    "PERSON_SCALARS",
    "PLAN_FIELDS",
    "USER_FIELDS",
    "USER_NAME_CHUNK",
    "USER_OBJECTS",
    "USER_PLAN_FLAG",
    "USER_TYPES",
    "as_bool",
    "as_id",
    "blank",
    "chunks",
    "get",
    "has",
    "initials",
    "quote",
]

#: Rows asked for per archive page (``$top``); a server may cap it lower without saying so.
PAGE_SIZE = 1000
#: Ids per ``oneOf`` filter.
ID_CHUNK = 500
#: User names per ``userName oneOf`` request (keeps the request line well under server limits).
USER_NAME_CHUNK = 100
#: More new initials than this in one batch of creates read every ``Name`` once instead of by prefix.
NAME_PREFIX_READS = 4
MOBILE_COLUMN = "mobilePhone/formattedNumber"
#: The ``ExtraFlags`` bit of a user-plan licence (reference §3).
USER_PLAN_FLAG = 1
#: The AllUsers archive columns read for every user (licence columns are added per tenant).
BASE_COLUMNS = (
    "associateDbId",
    "assocName",
    "userName",
    "assocType",
    "isActive",
    "personId",
    "personEmail",
    "firstName",
    "lastName",
    "title",
    "contactId",
    "contactName",
    "role",
    "usergroup",
    "otherGroups",
)
#: ``assocType`` numbers → the user type enum names.
USER_TYPES = {
    "1": "InternalAssociate",
    "2": "ResourceAssociate",
    "3": "ExternalAssociate",
    "4": "AnonymousAssociate",
    "5": "SystemAssociate",
}
_TRUE = {"1", "true", "yes", "[i:1]"}
USER_FIELDS = frozenset({"user_name", "role", "primary_group", "secondary_groups", "user_plan", "confidential"})
PERSON_FIELDS = frozenset({"first_name", "last_name", "email", "title", "mobile_phone", "owner_company"})
PLAN_FIELDS = USER_FIELDS | PERSON_FIELDS | {"active"}
#: Fields an update may write without reading the user first (their test values come from a bulk read).
FAST_FIELDS = frozenset({"user_name", "role", "primary_group", *PERSON_FIELDS})
#: User elements held as a list object (``{"Id", "Value"}``): the fast path tests the ``Id``.
USER_OBJECTS = {"role": "Role", "primary_group": "UserGroup"}
#: Person fields held as PersonEntity strings.
PERSON_SCALARS = {"first_name": "Firstname", "last_name": "Lastname", "title": "Title"}
#: Person fields held as the first item of a PersonEntity collection: (collection, User carrier key).
PERSON_LISTS = {"email": ("Emails", "Email"), "mobile_phone": ("MobilePhones", "MobilePhone")}


def quote(value: str) -> str:
    """An archive string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def blank(value: Any) -> Any:
    """``value`` with strings trimmed; an empty string is ``None``."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def as_bool(value: Any) -> bool:
    """An archive boolean: a JSON boolean or number, or a display string (``"1"``, ``"True"``, ``"[I:1]"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in _TRUE


def as_id(value: Any) -> int | None:
    """An id as an int; ``None`` for ``0``, empty or not a number."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n or None


def initials(first: Any, last: Any) -> str:
    """A user's ``Name`` (User ID) stem: the initials of first and last name, upper case (``U`` when none)."""
    return re.sub(r"[^A-Za-z0-9]", "", f"{(first or ' ')[:1]}{(last or ' ')[:1]}").upper() or "U"


def chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    """``items`` in lists of at most ``size``."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def get(obj: Any, name: str) -> Any:
    """A carrier member by name, case-insensitively (the Web API's JSON casing is not guaranteed)."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    low = name.lower()
    return next((v for k, v in obj.items() if k.lower() == low), None)


def has(obj: Any, name: str) -> bool:
    """Whether a carrier has the member ``name`` at all (case-insensitively), null or not."""
    return isinstance(obj, dict) and (name in obj or any(k.lower() == name.lower() for k in obj))
