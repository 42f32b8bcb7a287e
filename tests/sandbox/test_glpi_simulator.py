"""The GLPI simulator's own answers: GLPI's error shapes, sessions, items, search and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from plugin.sandbox.glpi import GLPISimulator, GLPISimulatorThread

USER_TOKEN = "sim-user-token"
APP_TOKEN = "sim-app-token"


@pytest.fixture
async def sim() -> AsyncIterator[GLPISimulator]:
    server = GLPISimulator(user_token=USER_TOKEN, app_token=APP_TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http(sim: GLPISimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.api_url + "/", timeout=5.0) as client:
        yield client


async def login(http: httpx.AsyncClient) -> dict[str, str]:
    """Headers of a fresh session."""
    r = await http.get("initSession", headers={"Authorization": f"user_token {USER_TOKEN}",
                                                "App-Token": APP_TOKEN})
    assert r.status_code == 200
    return {"Session-Token": r.json()["session_token"], "App-Token": APP_TOKEN}


async def add_ticket(http: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> int:
    data = {"name": "Broken mouse", "content": "<p>It clicks twice</p>", **fields}
    r = await http.post("Ticket", json={"input": data}, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def doc_link(sim: GLPISimulator, code: str) -> str:
    return f"; view documentation in your browser at {sim.api_url}/#{code}"


# -- sessions and tokens --------------------------------------------------------------------------

async def test_init_session_with_user_token_and_kill(sim: GLPISimulator,
                                                     http: httpx.AsyncClient) -> None:
    headers = await login(http)
    assert len(headers["Session-Token"]) == 26
    r = await http.get("killSession", headers=headers)
    assert (r.status_code, r.json()) == (200, True)
    r = await http.get("Ticket/1", headers=headers)
    assert r.status_code == 401
    assert r.json() == ["ERROR_SESSION_TOKEN_INVALID",
                        "session_token seems invalid"
                        + doc_link(sim, "ERROR_SESSION_TOKEN_INVALID")]


async def test_basic_auth_login(http: httpx.AsyncClient) -> None:
    good = base64.b64encode(b"glpi:glpi").decode()
    bad = base64.b64encode(b"glpi:nope").decode()
    r = await http.get("initSession", headers={"Authorization": f"Basic {good}",
                                                "App-Token": APP_TOKEN})
    assert r.status_code == 200 and "session_token" in r.json()
    r = await http.get("initSession", headers={"Authorization": f"Basic {bad}",
                                                "App-Token": APP_TOKEN})
    assert (r.status_code, r.json()) == (401, ["ERROR_GLPI_LOGIN",
                                               "Incorrect username or password"])


async def test_login_errors(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    r = await http.get("initSession", headers={"Authorization": "user_token nope",
                                                "App-Token": APP_TOKEN})
    assert (r.status_code, r.json()) == (401, ["ERROR_GLPI_LOGIN_USER_TOKEN",
                                               "parameter user_token seems invalid"])
    r = await http.get("initSession", headers={"App-Token": APP_TOKEN})
    assert r.status_code == 400
    assert r.json()[0] == "ERROR_LOGIN_PARAMETERS_MISSING"
    assert sim.login_count == 0


async def test_app_token_missing_and_wrong(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"user_token {USER_TOKEN}"}
    r = await http.get("initSession", headers=auth)
    assert r.status_code == 400
    assert r.json() == ["ERROR_APP_TOKEN_PARAMETERS_MISSING", "missing parameter app_token"
                        + doc_link(sim, "ERROR_APP_TOKEN_PARAMETERS_MISSING")]
    r = await http.get("initSession", headers={**auth, "App-Token": "other"})
    assert r.status_code == 400
    assert r.json() == ["ERROR_WRONG_APP_TOKEN_PARAMETER", "parameter app_token seems wrong"
                        + doc_link(sim, "ERROR_WRONG_APP_TOKEN_PARAMETER")]
    # Also checked after login, and accepted from the query string as GLPI does.
    headers = await login(http)
    r = await http.get("Ticket/1", headers={"Session-Token": headers["Session-Token"]})
    assert r.json()[0] == "ERROR_APP_TOKEN_PARAMETERS_MISSING"
    r = await http.get("User/4", params={"app_token": APP_TOKEN,
                                         "session_token": headers["Session-Token"]})
    assert r.status_code == 200 and r.json()["name"] == "tech"


async def test_an_app_token_sent_to_a_client_without_one_is_wrong() -> None:
    server = GLPISimulator(user_token=USER_TOKEN)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.api_url + "/") as client:
            auth = {"Authorization": f"user_token {USER_TOKEN}"}
            r = await client.get("initSession", headers={**auth, "App-Token": "anything"})
            assert r.json()[0] == "ERROR_WRONG_APP_TOKEN_PARAMETER"
            r = await client.get("initSession", headers=auth)
            assert r.status_code == 200
    finally:
        await server.stop()


async def test_session_token_missing(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    r = await http.get("Ticket/1", headers={"App-Token": APP_TOKEN})
    assert r.status_code == 400
    assert r.json() == ["ERROR_SESSION_TOKEN_MISSING",
                        "parameter session_token is missing or empty"
                        + doc_link(sim, "ERROR_SESSION_TOKEN_MISSING")]


async def test_expire_sessions_and_idle_lifetime(sim: GLPISimulator,
                                                 http: httpx.AsyncClient) -> None:
    headers = await login(http)
    assert (await http.get("User/4", headers=headers)).status_code == 200
    sim.expire_sessions()
    assert sim.active_sessions == 0
    r = await http.get("User/4", headers=headers)
    assert (r.status_code, r.json()[0]) == (401, "ERROR_SESSION_TOKEN_INVALID")
    sim.session_lifetime_s = 0.0
    headers = await login(http)
    r = await http.get("User/4", headers=headers)
    assert r.status_code == 401


async def test_ip_not_allowed(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    sim.ip_allowed = False
    r = await http.get("initSession", headers={"Authorization": f"user_token {USER_TOKEN}",
                                                "App-Token": APP_TOKEN})
    assert r.status_code == 400
    assert r.json() == ["ERROR_NOT_ALLOWED_IP", "There isn't an active API client matching "
                        "your IP address in the configuration (127.0.0.1)"]


# -- items ----------------------------------------------------------------------------------------

async def test_add_ticket_answers_201_with_location(sim: GLPISimulator,
                                                    http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.post("Ticket", headers=headers, json={"input": {
        "name": "VPN", "content": "<p>down</p>", "type": 2, "urgency": 4,
        "requesttypes_id": 7, "_users_id_requester": sim.user_id("bob")}})
    assert r.status_code == 201
    assert r.json() == {"id": 1, "message": ""}
    assert r.headers["Location"] == f"{sim.api_url}/Ticket/1"
    ticket = sim.ticket(1)
    assert (ticket["status"], ticket["type"], ticket["urgency"], ticket["requesttypes_id"]) == (
        1, 2, 4, 7)
    assert [(u["users_id"], u["type"]) for u in sim.ticket_users(1)] == [
        (sim.user_id("bob"), 1)]


async def test_add_ticket_errors(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.post("Ticket", headers={**headers, "Content-Type": "application/json"},
                        content=b"{not json")
    assert (r.status_code, r.json()) == (400, ["ERROR_JSON_PAYLOAD_INVALID",
                                               "JSON payload seems not valid"])
    r = await http.post("Ticket", headers=headers, json={"input": {"name": "no content"}})
    assert r.status_code == 400 and r.json()[0] == "ERROR_GLPI_ADD"
    r = await http.post("Ticket", headers=headers,
                        json={"input": {"name": "x" * 256, "content": "y"}})
    assert r.status_code == 400 and r.json()[0] == "ERROR_GLPI_ADD"
    r = await http.post("Ticket", headers=headers, json={"nothing": 1})
    assert r.status_code == 400 and r.json()[0] == "ERROR_BAD_ARRAY"
    r = await http.request("GET", "Ticket", headers=headers, content=b'{"a": 1}')
    assert r.status_code == 400 and r.json()[0] == "ERROR_JSON_PAYLOAD_FORBIDDEN"
    assert sim.tickets() == []


async def test_ticket_fields_and_sanitized_text(sim: GLPISimulator,
                                                http: httpx.AsyncClient) -> None:
    headers = await login(http)
    ticket_id = await add_ticket(http, headers, name="a < b & c",
                                 content="<p>x &amp; y</p>")
    r = await http.get(f"Ticket/{ticket_id}", headers=headers)
    assert r.status_code == 200
    body = r.json()
    for key in ("id", "name", "content", "status", "date", "date_mod", "users_id_recipient",
                "urgency", "priority", "type", "entities_id", "is_deleted", "links"):
        assert key in body
    assert body["name"] == "a &#60; b &#38; c"
    assert body["content"] == "&#60;p&#62;x &#38;amp; y&#60;/p&#62;"
    assert body["users_id_recipient"] == sim.user_id("helpdesk")
    assert "Last-Modified" in r.headers
    r = await http.get(f"Ticket/{ticket_id}",
                       headers={**headers, "X-GLPI-Sanitized-Content": "false"})
    assert r.json()["name"] == "a < b & c"
    assert r.json()["content"] == "<p>x &amp; y</p>"
    r = await http.get(f"Ticket/{ticket_id}", params={"expand_dropdowns": "true",
                                                      "get_hateoas": "false"}, headers=headers)
    assert r.json()["users_id_recipient"] == "helpdesk" and "links" not in r.json()


async def test_unknown_items_and_itemtypes(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.get("Ticket/99", headers=headers)
    assert (r.status_code, r.json()) == (404, ["ERROR_ITEM_NOT_FOUND", "Item not found"])
    r = await http.get("Ticket/99/ITILFollowup", headers=headers)
    assert r.status_code == 404
    r = await http.get("Spaceship/1", headers=headers)
    assert r.status_code == 400 and r.json()[0] == "ERROR_ITEMTYPE_NOT_FOUND_NOR_COMMONDBTM"


async def test_followups_and_ticket_users(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    ticket_id = await add_ticket(http, headers)
    r = await http.post("ITILFollowup", headers=headers, json={"input": {
        "itemtype": "Ticket", "items_id": ticket_id, "content": "<p>hi</p>", "is_private": 0}})
    assert r.status_code == 201
    mine = r.json()["id"]
    private = sim.add_followup(ticket_id, "secret", private=True)
    r = await http.get(f"Ticket/{ticket_id}/ITILFollowup", headers=headers)
    rows = r.json()
    assert [(f["id"], f["is_private"]) for f in rows] == [(mine, 0), (private, 1)]
    assert rows[1]["users_id"] == sim.user_id("tech")
    assert rows[1]["content"] == "&#60;p&#62;secret&#60;/p&#62;"

    sim.assign(ticket_id, "tech")
    assert sim.ticket(ticket_id)["status"] == 2
    r = await http.get(f"Ticket/{ticket_id}/Ticket_User", headers=headers)
    assert sorted((u["users_id"], u["type"]) for u in r.json()) == [
        (sim.user_id("helpdesk"), 1), (sim.user_id("tech"), 2)]

    r = await http.post("ITILFollowup", headers=headers, json={"input": {
        "itemtype": "Ticket", "items_id": 999, "content": "x"}})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_GLPI_ADD")
    sim.set_ticket_status(ticket_id, 6)
    r = await http.post("ITILFollowup", headers=headers, json={"input": {
        "itemtype": "Ticket", "items_id": ticket_id, "content": "late"}})
    assert r.status_code == 400 and "permission" in r.json()[1]


async def test_update_ticket_status(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    ticket_id = await add_ticket(http, headers)
    r = await http.put(f"Ticket/{ticket_id}", headers=headers,
                       json={"input": {"status": 5}})
    assert (r.status_code, r.json()) == (200, [{str(ticket_id): True, "message": ""}])
    assert sim.ticket(ticket_id)["status"] == 5
    assert sim.ticket(ticket_id)["solvedate"] is not None


async def test_document_upload_is_linked_to_the_ticket(sim: GLPISimulator,
                                                       http: httpx.AsyncClient) -> None:
    headers = await login(http)
    ticket_id = await add_ticket(http, headers)
    manifest = {"input": {"name": "Screenshot", "_filename": ["shot.png"],
                          "itemtype": "Ticket", "items_id": ticket_id}}
    r = await http.post("Document", headers=headers,
                        data={"uploadManifest": json.dumps(manifest)},
                        files={"filename[0]": ("shot.png", b"\x89PNG...", "image/png")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["upload_result"]["filename"][0]["name"] == "shot.png"
    assert r.headers["Location"] == f"{sim.api_url}/Document/{body['id']}"
    docs = sim.documents(ticket_id)
    assert [(d["name"], d["filename"], d["mime"]) for d in docs] == [
        ("Screenshot", "shot.png", "image/png")]
    assert sim.document_data(body["id"]) == b"\x89PNG..."
    r = await http.get(f"Ticket/{ticket_id}/Document_Item", headers=headers)
    assert [d["documents_id"] for d in r.json()] == [body["id"]]
    r = await http.get(f"Document/{body['id']}",
                       headers={**headers, "Accept": "application/octet-stream"})
    assert r.content == b"\x89PNG..."

    r = await http.post("Document", headers=headers, data={"uploadManifest": "{bad"},
                        files={"filename[0]": ("a.txt", b"a", "text/plain")})
    assert r.json()[0] == "ERROR_JSON_PAYLOAD_INVALID"


# -- lists and search -----------------------------------------------------------------------------

async def test_user_search_text_is_glpis_like(sim: GLPISimulator,
                                              http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.get("User", params={"searchText[name]": "^alice$"}, headers=headers)
    assert [u["name"] for u in r.json()] == ["alice"]
    r = await http.get("User", params={"searchText[name]": "o"}, headers=headers)
    assert sorted(u["name"] for u in r.json()) == ["bob", "carol"]
    r = await http.get("User", params={"searchText[name]": "^nobody$"}, headers=headers)
    assert (r.status_code, r.json()) == (200, [])
    r = await http.get("User", params={"range": "0-1"}, headers=headers)
    assert r.status_code == 206 and len(r.json()) == 2
    assert r.headers["Content-Range"] == "0-1/6"


async def test_search_user_by_email(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.get("search/User", headers=headers, params={
        "criteria[0][field]": "5", "criteria[0][searchtype]": "contains",
        "criteria[0][value]": "^carol@sandbox.local$", "forcedisplay[0]": "2"})
    assert r.status_code == 200
    body = r.json()
    assert body["totalcount"] == 1
    assert body["data"][0]["2"] == sim.user_id("carol")
    assert body["data"][0]["1"] == "carol"
    assert body["data"][0]["5"] == "carol@sandbox.local"


async def test_search_tickets_by_requester_status_and_content(
        sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    alice = sim.user_id("alice")
    first = await add_ticket(http, headers, _users_id_requester=alice,
                             content="<p>needle-42 here</p>")
    second = await add_ticket(http, headers, _users_id_requester=alice)
    await add_ticket(http, headers, _users_id_requester=sim.user_id("bob"))
    sim.set_ticket_status(second, 6)

    r = await http.get("search/Ticket", headers=headers, params=[
        ("criteria[0][field]", "4"), ("criteria[0][searchtype]", "equals"),
        ("criteria[0][value]", str(alice)),
        ("criteria[1][link]", "AND"), ("criteria[1][field]", "12"),
        ("criteria[1][searchtype]", "equals"), ("criteria[1][value]", "notold"),
        ("forcedisplay[0]", "2")])
    body = r.json()
    assert [row["2"] for row in body["data"]] == [first]
    assert body["data"][0]["4"] == "alice" and body["data"][0]["12"] == 1

    r = await http.get("search/Ticket", headers=headers, params={
        "criteria[0][field]": "21", "criteria[0][searchtype]": "contains",
        "criteria[0][value]": "needle-42", "forcedisplay[0]": "2"})
    assert [row["2"] for row in r.json()["data"]] == [first]

    r = await http.get("search/Ticket", headers=headers, params={
        "criteria[0][field]": "21", "criteria[0][searchtype]": "contains",
        "criteria[0][value]": "absent"})
    assert r.status_code == 200
    assert r.json() == {"totalcount": 0, "count": 0, "sort": [1], "order": ["ASC"],
                        "content-range": "0--1/0"}
    assert "Content-Range" not in r.headers


async def test_search_or_links_sort_and_range(sim: GLPISimulator,
                                              http: httpx.AsyncClient) -> None:
    headers = await login(http)
    ids = [await add_ticket(http, headers, name=f"T{i}") for i in range(4)]
    sim.set_ticket_status(ids[0], 5)
    sim.set_ticket_status(ids[3], 4)
    r = await http.get("search/Ticket", headers=headers, params=[
        ("criteria[0][field]", "12"), ("criteria[0][searchtype]", "equals"),
        ("criteria[0][value]", "5"),
        ("criteria[1][link]", "OR"), ("criteria[1][field]", "12"),
        ("criteria[1][searchtype]", "equals"), ("criteria[1][value]", "4"),
        ("forcedisplay[0]", "2"), ("sort", "2"), ("order", "DESC"), ("range", "0-0")])
    assert r.status_code == 206
    body = r.json()
    assert (body["totalcount"], body["count"]) == (2, 1)
    assert body["data"][0]["2"] == ids[3]
    assert r.headers["Content-Range"] == "0-0/2"


async def test_search_criteria_errors(http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.get("search/Ticket", headers=headers, params={
        "criteria[0][field]": "9999", "criteria[0][searchtype]": "equals",
        "criteria[0][value]": "1"})
    assert r.status_code == 400 and r.json()[1].startswith("Bad field ID in search criteria")
    r = await http.get("search/Ticket", headers=headers, params={"criteria[0][field]": "1"})
    assert r.status_code == 400 and r.json()[1].startswith("Malformed search criteria")
    r = await http.get("search/Ticket", headers=headers, params={"range": "5-1-2"})
    assert r.status_code == 400


async def test_list_search_options(http: httpx.AsyncClient) -> None:
    headers = await login(http)
    r = await http.get("listSearchOptions/Ticket", headers=headers)
    options = r.json()
    assert options["common"] == "Characteristics"
    assert options["1"]["field"] == "name" and options["2"]["field"] == "id"
    assert options["12"]["field"] == "status" and options["21"]["field"] == "content"
    assert options["4"]["name"] == "Requester" and options["5"]["name"] == "Technician"
    r = await http.get("listSearchOptions/User", headers=headers)
    assert r.json()["5"]["table"] == "glpi_useremails"


# -- faults and load ------------------------------------------------------------------------------

async def test_down_refuses_connections_then_comes_back(sim: GLPISimulator,
                                                        http: httpx.AsyncClient) -> None:
    headers = await login(http)
    await sim.set_down(True)
    with pytest.raises(httpx.ConnectError):
        await http.get("User/4", headers=headers)
    await sim.set_down(False)
    assert (await http.get("User/4", headers=headers)).status_code == 200


async def test_down_with_503(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    await sim.set_down(True, refuse=False)
    r = await http.get("User/4", headers=headers)
    assert r.status_code == 503
    await sim.set_down(False)
    assert (await http.get("User/4", headers=headers)).status_code == 200


async def test_fail_next_counts_and_matches(sim: GLPISimulator,
                                            http: httpx.AsyncClient) -> None:
    headers = await login(http)
    sim.fail_next("GET", r"/User/\d+$", 500, count=2)
    sim.fail_next("POST", r"/Ticket$", 502)
    statuses = [(await http.get("User/4", headers=headers)).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    r = await http.post("Ticket", headers=headers, json={"input": {"content": "x"}})
    assert r.status_code == 502
    assert sim.tickets() == []
    assert (await http.get("User/4/UserEmail", headers=headers)).status_code == 200


async def test_slow_create_commits_before_answering(sim: GLPISimulator,
                                                    http: httpx.AsyncClient) -> None:
    headers = await login(http)
    sim.slow_create_after_commit(1, delay_s=5.0)
    with pytest.raises(httpx.ReadTimeout):
        await http.post("Ticket", headers=headers, timeout=0.3,
                        json={"input": {"name": "slow", "content": "x"}})
    assert [t["name"] for t in sim.tickets()] == ["slow"]
    r = await http.post("Ticket", headers=headers, json={"input": {"content": "fast"}})
    assert r.status_code == 201 and r.json()["id"] == 2


async def test_latency_and_max_concurrency(sim: GLPISimulator) -> None:
    sim.latency_s = 0.05
    sim.max_concurrency = 2
    async with httpx.AsyncClient(base_url=sim.api_url + "/") as client:
        headers = await login(client)
        started = time.monotonic()
        answers = await asyncio.gather(*(client.get("User/4", headers=headers)
                                         for _ in range(6)))
        elapsed = time.monotonic() - started
    assert all(a.status_code == 200 for a in answers)
    assert sim.peak_in_flight == 2
    assert elapsed >= 0.15  # six answers of 50 ms, two at a time


async def test_request_log(sim: GLPISimulator, http: httpx.AsyncClient) -> None:
    headers = await login(http)
    await add_ticket(http, headers)
    await http.get("Ticket/9", headers=headers)
    log = [(r.method, r.path, r.status, r.user) for r in sim.request_log]
    assert log == [("GET", "/apirest.php/initSession", 200, None),
                   ("POST", "/apirest.php/Ticket", 201, "helpdesk"),
                   ("GET", "/apirest.php/Ticket/9", 404, "helpdesk")]
    assert sim.request_log[1].body["input"]["name"] == "Broken mouse"


def test_thread_wrapper_serves_sync_code() -> None:
    runner = GLPISimulatorThread(user_token=USER_TOKEN)
    sim = runner.start()
    try:
        with httpx.Client(base_url=sim.api_url + "/") as client:
            token = client.get("initSession", headers={
                "Authorization": f"user_token {USER_TOKEN}"}).json()["session_token"]
            r = client.post("Ticket", headers={"Session-Token": token},
                            json={"input": {"name": "From a thread", "content": "x"}})
            ticket_id = r.json()["id"]
            runner.call(lambda: sim.set_ticket_status(ticket_id, 3))
            assert client.get(f"Ticket/{ticket_id}",
                              headers={"Session-Token": token}).json()["status"] == 3
            assert runner.call(sim.set_down(True, refuse=False)) is None
            assert client.get("User/4", headers={"Session-Token": token}).status_code == 503
    finally:
        runner.stop()


async def test_seeded_world(sim: GLPISimulator) -> None:
    logins = {u["name"] for u in sim._store["User"].values()}
    assert {"glpi", "helpdesk", "tech", "alice", "bob", "carol"} <= logins
    emails = {e["email"] for e in sim._store["UserEmail"].values()}
    assert {"alice@sandbox.local", "bob@sandbox.local", "carol@sandbox.local"} <= emails
    assert sim._store["RequestType"][7]["name"] == "Chat"
