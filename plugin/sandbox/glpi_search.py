"""The GLPI simulator's search engine: `listSearchOptions/<itemtype>` and `search/<itemtype>` for
tickets and users, with GLPI's search options, criteria (AND binding tighter than OR), forced
columns, sorting and ranges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .glpi_data import ASSIGNED, REQUESTER, _as_list, _like, _to_int, sanitize

JSON = Any


class _SearchHost:
    """What the search needs of the simulator it is part of."""

    _store: dict[str, dict[int, dict[str, Any]]]

    def _login_of(self, user_id: int) -> str:
        raise NotImplementedError

    def _name_of(self, itemtype: str, item_id: int) -> Any:
        raise NotImplementedError

    def _error(self, status: int, code: str, message: str, doc: bool = False) -> Exception:
        raise NotImplementedError

    def _page(self, itemtype: str, rows: list[Any], params: dict[str, Any], default_limit: int,
              ) -> tuple[int, list[Any], dict[str, str], str]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Option:
    name: str
    table: str
    field: str
    datatype: str
    #: What criteria compare and what the results show for an item: one value, or a list.
    value: Callable[[_SearchHost, dict[str, Any]], Any]
    #: For user columns: the ids `equals` compares with.
    ids: Callable[[_SearchHost, dict[str, Any]], list[int]] | None = None


def _users_of(kind: int) -> tuple[Callable[[_SearchHost, dict[str, Any]], Any],
                                  Callable[[_SearchHost, dict[str, Any]], list[int]]]:
    def ids(sim: _SearchHost, ticket: dict[str, Any]) -> list[int]:
        return [link["users_id"] for link in sim._store["Ticket_User"].values()
                if link["tickets_id"] == ticket["id"] and link["type"] == kind]

    def names(sim: _SearchHost, ticket: dict[str, Any]) -> Any:
        return [sim._login_of(uid) for uid in ids(sim, ticket)]

    return names, ids


_REQ_NAMES, _REQ_IDS = _users_of(REQUESTER)
_TECH_NAMES, _TECH_IDS = _users_of(ASSIGNED)


def _field(name: str) -> Callable[[_SearchHost, dict[str, Any]], Any]:
    return lambda _sim, item: item.get(name)


_TICKET_OPTIONS: dict[int, _Option] = {
    1: _Option("Title", "glpi_tickets", "name", "itemlink", _field("name")),
    2: _Option("ID", "glpi_tickets", "id", "number", _field("id")),
    3: _Option("Priority", "glpi_tickets", "priority", "specific", _field("priority")),
    4: _Option("Requester", "glpi_users", "name", "dropdown", _REQ_NAMES, _REQ_IDS),
    5: _Option("Technician", "glpi_users", "name", "dropdown", _TECH_NAMES, _TECH_IDS),
    7: _Option("Category", "glpi_itilcategories", "completename", "dropdown",
               lambda sim, t: sim._name_of("ITILCategory", t["itilcategories_id"])),
    10: _Option("Urgency", "glpi_tickets", "urgency", "specific", _field("urgency")),
    12: _Option("Status", "glpi_tickets", "status", "specific", _field("status")),
    14: _Option("Type", "glpi_tickets", "type", "specific", _field("type")),
    15: _Option("Opening date", "glpi_tickets", "date", "datetime", _field("date")),
    19: _Option("Last update", "glpi_tickets", "date_mod", "datetime", _field("date_mod")),
    21: _Option("Description", "glpi_tickets", "content", "text", _field("content")),
    22: _Option("Writer", "glpi_users", "name", "dropdown",
                lambda sim, t: sim._login_of(t["users_id_recipient"]),
                lambda _sim, t: [t["users_id_recipient"]]),
    80: _Option("Entity", "glpi_entities", "completename", "dropdown",
                lambda sim, t: sim._name_of("Entity", t["entities_id"])),
}

_USER_OPTIONS: dict[int, _Option] = {
    1: _Option("Login", "glpi_users", "name", "itemlink", _field("name")),
    2: _Option("ID", "glpi_users", "id", "number", _field("id")),
    5: _Option("Email", "glpi_useremails", "email", "email",
               lambda sim, u: [e["email"] for e in sim._store["UserEmail"].values()
                               if e["users_id"] == u["id"]]),
    8: _Option("Active", "glpi_users", "is_active", "bool", _field("is_active")),
    9: _Option("First name", "glpi_users", "firstname", "string", _field("firstname")),
    34: _Option("Last name", "glpi_users", "realname", "string", _field("realname")),
    80: _Option("Entity", "glpi_entities", "completename", "dropdown",
                lambda sim, u: sim._name_of("Entity", u["entities_id"])),
}

_SEARCH = {"Ticket": (_TICKET_OPTIONS, [12, 19, 15, 3, 4, 5, 7]),
           "User": (_USER_OPTIONS, [34, 5, 9, 8])}

#: Special values of the ticket status criterion.
_STATUS_SETS = {"notold": {1, 2, 3, 4}, "notclosed": {1, 2, 3, 4, 5}, "old": {5, 6},
                "process": {2, 3}, "all": {1, 2, 3, 4, 5, 6}}


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return (0, "")
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value).lower())


def _cell(value: Any) -> Any:
    """One search result cell: a single value, a list for several, null for none."""
    if isinstance(value, list):
        if not value:
            return None
        return value[0] if len(value) == 1 else value
    return value


class Search(_SearchHost):
    """The search endpoints, mixed into the simulator."""

    def _list_search_options(self, itemtype: str) -> JSON:
        if itemtype not in _SEARCH:
            raise self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM",
                              "resource not found or not an instance of CommonDBTM", doc=True)
        options, _ = _SEARCH[itemtype]
        out: dict[str, Any] = {"common": "Characteristics"}
        for oid, opt in sorted(options.items()):
            if opt.datatype in ("dropdown", "itemlink"):
                types = ["contains", "notcontains", "equals", "notequals"]
            elif opt.datatype in ("number", "datetime", "specific", "bool"):
                types = ["equals", "notequals", "lessthan", "morethan", "contains",
                         "notcontains"]
            else:
                types = ["contains", "notcontains"]
            table_type = opt.table.removeprefix("glpi_").rstrip("s").title()
            out[str(oid)] = {"name": opt.name, "table": opt.table, "field": opt.field,
                             "datatype": opt.datatype, "nosearch": False, "nodisplay": False,
                             "available_searchtypes": types,
                             "uid": f"{itemtype}.{opt.field}" if table_type == itemtype
                             else f"{itemtype}.{table_type}.{opt.field}"}
        return out

    def _criterion(self, itemtype: str, options: dict[int, _Option], criterion: Any,
                   ) -> Callable[[dict[str, Any]], bool]:
        if not isinstance(criterion, dict) or not {"field", "searchtype", "value"} <= set(
                criterion):
            raise self._error(400, "ERROR", "Malformed search criteria", doc=True)
        field_id = _to_int(criterion["field"])
        if field_id is None or field_id not in options:
            raise self._error(400, "ERROR", "Bad field ID in search criteria", doc=True)
        option = options[field_id]
        kind = str(criterion["searchtype"]).lower()
        raw = str(criterion["value"])

        if kind in ("contains", "notcontains"):
            test = _like(str(sanitize(raw)))

            def contains(item: dict[str, Any]) -> bool:
                values = option.value(self, item)
                values = values if isinstance(values, list) else [values]
                found = any(test("" if v is None else str(v)) for v in values)
                return found if kind == "contains" else not found
            return contains
        if kind in ("equals", "notequals", "under", "notunder"):
            positive = kind in ("equals", "under")
            if itemtype == "Ticket" and field_id == 12 and raw in _STATUS_SETS:
                allowed = _STATUS_SETS[raw]
                return lambda item: (item["status"] in allowed) == positive
            wanted = _to_int(raw)

            def equals(item: dict[str, Any]) -> bool:
                if option.ids is not None:
                    hit = wanted in option.ids(self, item)
                else:
                    value = option.value(self, item)
                    values = value if isinstance(value, list) else [value]
                    hit = any((wanted is not None and _to_int(v) == wanted) or str(v) == raw
                              for v in values)
                return hit == positive
            return equals
        if kind in ("lessthan", "morethan"):
            number = _to_int(raw)

            def compare(item: dict[str, Any]) -> bool:
                value = option.value(self, item)
                if value is None:
                    return False
                left: Any = value
                right: Any = raw
                if number is not None and isinstance(value, int):
                    right = number
                elif not isinstance(value, str):
                    return False
                return bool(left > right) if kind == "morethan" else bool(left < right)
            return compare
        raise self._error(400, "ERROR", "Malformed search criteria", doc=True)

    def _search(self, itemtype: str, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if itemtype not in _SEARCH:
            raise self._error(400, "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM",
                              "resource not found or not an instance of CommonDBTM", doc=True)
        options, defaults = _SEARCH[itemtype]
        criteria = _as_list(params.get("criteria", []))
        # AND binds tighter than OR, as in the SQL GLPI builds.
        groups: list[list[tuple[bool, Callable[[dict[str, Any]], bool]]]] = []
        searched: list[int] = []
        for index, criterion in enumerate(criteria):
            test = self._criterion(itemtype, options, criterion)
            link = str(criterion.get("link", "AND")).upper() if index else "AND"
            negate = "NOT" in link
            if link.startswith("OR") or not groups:
                groups.append([])
            groups[-1].append((negate, test))
            searched.append(int(criterion["field"]))
        forced = [f for f in (_to_int(v) for v in _as_list(params.get("forcedisplay", [])))
                  if f is not None]
        for f in forced:
            if f not in options:
                raise self._error(400, "ERROR", "Bad field ID in forcedisplay", doc=True)
        columns: list[int] = []
        for col in [1, *defaults, *searched, *forced, 80]:
            if col not in columns:
                columns.append(col)
        items = [i for i in self._store[itemtype].values() if not i.get("is_deleted")]
        if groups:
            items = [i for i in items
                     if any(all(t(i) != neg for neg, t in group) for group in groups)]
        sort = _to_int(params.get("sort", 1)) or 1
        if sort not in options:
            sort = 1
        order = str(params.get("order", "ASC")).upper()
        items.sort(key=lambda i: (_sort_key(options[sort].value(self, i)), i["id"]),
                   reverse=order == "DESC")
        status, page, headers, content_range = self._page(itemtype, items, params, 15)
        body: dict[str, Any] = {"totalcount": len(items), "count": len(page), "sort": [sort],
                                "order": [order]}
        if page:
            body["data"] = [{str(c): _cell(options[c].value(self, i)) for c in columns}
                            for i in page]
        body["content-range"] = content_range
        return status, body, headers
