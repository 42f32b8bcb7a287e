"""mattermostdriver's endpoint catalogue loaded on its own: every endpoint group the driver has,
the same calls built, the real package left alone, and a clear error when the endpoints reach
outside their folder."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin import mm_catalog
from plugin.mm_catalog import GROUPS, PACKAGE, CatalogError, Endpoints, load_groups
from plugin.mm_http import AsyncClient

ROOT = Path(__file__).resolve().parents[2]
#: What importing the REST client must not bring in.
HEAVY = ("requests", "urllib3", "charset_normalizer", "mattermostdriver")


class Recorder:
    """A client that writes down what each endpoint method asks of it."""

    url = "http://chat.example:80/api/v4"
    userid = "me-id"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def make_request(self, method: str, endpoint: str, options: Any = None, params: Any = None,
                     data: Any = None, files: Any = None, basepath: Any = None) -> str:
        self.calls.append((method, endpoint, options, params, data, files, basepath))
        return "answer"

    def get(self, endpoint: str, options: Any = None, params: Any = None) -> str:
        self.calls.append(("get", endpoint, options, params))
        return "answer"

    def post(self, endpoint: str, options: Any = None, params: Any = None, data: Any = None,
             files: Any = None) -> str:
        self.calls.append(("post", endpoint, options, params, data, files))
        return "answer"

    def put(self, endpoint: str, options: Any = None, params: Any = None,
            data: Any = None) -> str:
        self.calls.append(("put", endpoint, options, params, data))
        return "answer"

    def delete(self, endpoint: str, options: Any = None, params: Any = None,
               data: Any = None) -> str:
        self.calls.append(("delete", endpoint, options, params, data))
        return "answer"


def real_driver() -> Any:
    from mattermostdriver import Driver  # tests may import the whole driver

    return Driver({"url": "chat.example", "scheme": "http", "port": 80, "token": "t"})


def driver_groups() -> dict[str, Any]:
    """Every endpoint group of the real Driver: its properties and its `api` table."""
    from mattermostdriver import Driver

    driver = real_driver()
    names = {name for name, value in vars(Driver).items()
             if isinstance(value, property) and name != "api"}
    names |= set(driver._api)
    return {name: getattr(driver, name, None) or driver._api[name] for name in names}


def public_methods(cls: type) -> set[str]:
    return {name for name, value in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


# --- the catalogue is the driver's ----------------------------------------------------------------

def test_every_endpoint_group_of_the_driver_is_there_under_its_name() -> None:
    theirs = driver_groups()
    ours = Endpoints(Recorder())  # type: ignore[arg-type]
    assert set(GROUPS) == set(theirs) == set(inspect.get_annotations(Endpoints))
    assert {"posts", "users", "channels", "teams", "files", "reactions", "bots", "commands",
            "webhooks", "preferences"} <= set(GROUPS)
    for name, real in theirs.items():
        group = getattr(ours, name)
        cls, real_cls = type(group), type(real)
        assert cls.__qualname__ == real_cls.__qualname__, name
        assert cls.__module__ == f"{PACKAGE}.{real_cls.__module__.rpartition('.')[2]}", name
        assert cls is not real_cls
        assert public_methods(cls) == public_methods(real_cls) != set(), name
        assert getattr(cls, "endpoint", None) == getattr(real_cls, "endpoint", None), name
        assert group.client is ours.client


def test_the_async_client_takes_what_the_endpoints_give_their_client() -> None:
    from mattermostdriver.client import Client

    for name in ("make_request", "get", "post", "put", "delete"):
        ours = inspect.signature(getattr(AsyncClient, name)).parameters
        theirs = inspect.signature(getattr(Client, name)).parameters
        assert [(p.name, p.default) for p in ours.values()] == \
               [(p.name, p.default) for p in theirs.values()], name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
    client = AsyncClient({"url": "chat.example", "scheme": "http", "port": 8065,
                          "basepath": "/mm/api/v4", "token": "secret-token"})
    assert client.url == "http://chat.example:8065/mm/api/v4"
    assert client.userid == "" and client.request_timeout is None
    assert client.auth_header() == {"Authorization": "Bearer secret-token"}
    assert "secret-token" not in repr(client)


@pytest.mark.parametrize("options, message", [
    ({"scheme": "http"}, "host name"),
    ({"url": "chat.example", "scheme": "ftp"}, "http or https"),
    ({"url": "chat.example", "port": "8065"}, "not a TCP port"),
    ({"url": "chat.example", "port": 0}, "not a TCP port"),
    ({"url": "chat.example", "request_timeout": -1}, "positive number"),
    ({"url": "chat.example", "verify": None}, "CA bundle"),
    ({"url": "chat.example", "login_id": "bot", "password": "pw"},
     "unknown Mattermost client options: login_id, password"),
])
def test_bad_client_options_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        AsyncClient(options)
    assert "pw" not in str(caught.value).replace("password", "")


CALLS = [
    ("posts", "create_post", ({"channel_id": "c1", "message": "hi", "props": {"k": 1}},), {}),
    ("posts", "get_posts_for_channel", ("c1",), {"params": {"since": 5}}),
    ("posts", "patch_post", ("p1", {"message": "edited"}), {}),
    ("posts", "get_thread", ("p1",), {}),
    ("posts", "create_ephemeral_post", ({"user_id": "u1", "post": {"message": "x"}},), {}),
    ("users", "get_user", ("me",), {}),
    ("teams", "get_team_by_name", ("sandbox",), {}),
    ("teams", "get_user_teams", ("me",), {}),
    ("channels", "get_channel_by_name", ("t1", "helpdesk"), {}),
    ("channels", "get_channels_for_user", ("u1", "t1"), {}),
    ("channels", "create_direct_message_channel", (["u1", "u2"],), {}),
    ("reactions", "create_reaction", ({"user_id": "u1", "post_id": "p1",
                                       "emoji_name": "eyes"},), {}),
    ("reactions", "delete_reaction", ("u1", "p1", "eyes"), {}),
    ("files", "upload_file", ("c1",), {"files": {"files": ("a.txt", b"abc")}}),
    ("emoji", "create_custom_emoji", ("party", {"image": ("p.png", b"png")}), {}),
    ("bots", "get_bots", (), {"params": {"page": 0}}),
    ("commands", "list_commands_for_team", (), {"params": {"team_id": "t1"}}),
    ("webhooks", "create_incoming_hook", ({"channel_id": "c1"},), {}),
    ("preferences", "get_user_preferences", ("u1",), {}),
]


@pytest.mark.parametrize("group, method, args, kwargs", CALLS,
                         ids=[f"{c[0]}.{c[1]}" for c in CALLS])
def test_calls_are_built_as_the_driver_builds_them(group: str, method: str,
                                                   args: tuple[Any, ...],
                                                   kwargs: dict[str, Any]) -> None:
    ours, theirs = Recorder(), Recorder()
    ours_result = getattr(getattr(Endpoints(ours), group), method)(  # type: ignore[arg-type]
        *args, **kwargs)
    getattr(type(driver_groups()[group])(theirs), method)(*args, **kwargs)
    assert ours_result == "answer"
    assert ours.calls == theirs.calls and len(ours.calls) == 1


def test_a_few_calls_have_the_method_path_and_body_expected() -> None:
    client = Recorder()
    d = Endpoints(client)  # type: ignore[arg-type]
    body = {"channel_id": "c1", "message": "hi", "root_id": "r1"}
    d.posts.create_post(body)
    d.posts.get_posts_for_channel("c1", params={"since": 5})
    d.posts.patch_post("p1", {"message": "edited"})
    d.users.get_user("me")
    d.files.upload_file("c1", files={"files": ("a.txt", b"abc")})
    d.emoji.create_custom_emoji("party", {"image": b"png"})
    assert client.calls == [
        ("post", "/posts", body, None, None, None),
        ("get", "/channels/c1/posts", None, {"since": 5}),
        ("put", "/posts/p1/patch", {"message": "edited"}, None, None),
        ("get", "/users/me", None, None),
        ("post", "/files", None, None, {"channel_id": "c1"}, {"files": ("a.txt", b"abc")}),
        ("post", "/emoji", None, None, {"emoji": '{"name": "party", "creator_id": "me-id"}'},
         {"image": b"png"}),
    ]


# --- the real package is left alone ---------------------------------------------------------------

def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_loading_leaves_the_real_package_alone_and_imports_no_blocking_client() -> None:
    done = run_python(f"""
        import sys
        import plugin.mattermost
        from plugin import mm_catalog
        heavy = sorted(m for m in sys.modules if m.partition(".")[0] in {HEAVY!r})
        assert heavy == [], heavy
        ours = plugin.mattermost.MattermostAPI("http://chat.example", "t").driver.posts
        import mattermostdriver
        from mattermostdriver import Driver
        from mattermostdriver.endpoints.posts import Posts
        assert Driver.__module__ == "mattermostdriver.driver"
        assert mattermostdriver.Driver is Driver and "requests" in sys.modules
        real = Driver({{"url": "chat.example"}}).posts
        assert type(real) is Posts and type(ours) is not Posts
        assert type(ours).__module__ == "{PACKAGE}.posts"
        assert Posts.__module__ == "mattermostdriver.endpoints.posts"
        assert sys.modules["mattermostdriver.endpoints"].__file__ == \\
            sys.modules["{PACKAGE}"].__file__
        assert sys.modules["mattermostdriver.endpoints"] is not sys.modules["{PACKAGE}"]
        print("ok")
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_installed_endpoints_import_nothing_outside_their_folder() -> None:
    """Read statically, so an import inside a method is seen too."""
    folder = mm_catalog.endpoints_folder()
    local = {path.stem for path in folder.glob("*.py")}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name}:{node.lineno} reaches above its folder"
                assert node.module is None or node.module.partition(".")[0] in local, \
                    f"{path.name}:{node.lineno} imports .{node.module}"
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) \
                    else [alias.name for alias in node.names]
                for name in names:
                    assert name.partition(".")[0] in sys.stdlib_module_names, \
                        f"{path.name}:{node.lineno} imports {name}"


# --- endpoints that reach outside their folder ----------------------------------------------------

_packages = itertools.count()


@pytest.fixture
def fake_package() -> Iterator[str]:
    """A package name of our own for an endpoints folder made by the test, unloaded after."""
    name = f"plugin._mm_endpoints_test_{next(_packages)}"
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


def endpoints(tmp_path: Path, **modules: str) -> Path:
    folder = tmp_path / "endpoints"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "base.py").write_text("class Base:\n    def __init__(self, client):\n"
                                    "        self.client = client\n")
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return folder


def test_a_well_behaved_folder_loads_once(tmp_path: Path, fake_package: str) -> None:
    folder = endpoints(tmp_path, things="""
        import json
        from .base import Base

        class Things(Base):
            def get_thing(self, thing_id):
                return self.client.get("/things/" + thing_id, params={"raw": json.dumps(1)})
    """)
    first = load_groups(folder, fake_package, [("things", "Things")])
    assert list(first) == ["things.Things"]
    assert first["things.Things"].__module__ == f"{fake_package}.things"
    assert load_groups(folder, fake_package, [("things", "Things")]) == first


@pytest.mark.parametrize("source", [
    "from mattermostdriver.exceptions import ResourceNotFound\n",
    "import mattermostdriver.exceptions\n",
    "from ..mm_http import Response\n",  # above the folder: our own package
], ids=["from-absolute", "import-absolute", "relative-above"])
def test_an_import_outside_the_folder_is_a_clear_error(tmp_path: Path, fake_package: str,
                                                       source: str) -> None:
    import mattermostdriver  # noqa: F401  (so only what the module holds can tell)

    folder = endpoints(tmp_path, bad=source + "from .base import Base\n\n"
                                            "class Bad(Base):\n    pass\n")
    with pytest.raises(CatalogError, match=r"bad \(in .*endpoints\) takes .* outside its folder"):
        load_groups(folder, fake_package, [("bad", "Bad")])


def test_an_import_that_cannot_resolve_outside_the_folder_is_a_clear_error(
        tmp_path: Path, fake_package: str) -> None:
    folder = endpoints(tmp_path, bad="from ..exceptions import ResourceNotFound\n")
    with pytest.raises(CatalogError, match=r"bad\.py cannot be loaded on its own .*"
                                           r"imports something outside its folder"):
        load_groups(folder, fake_package, [("bad", "Bad")])


def test_loading_the_driver_package_unseen_is_caught_too(tmp_path: Path) -> None:
    folder = endpoints(tmp_path, sly="""
        import importlib
        from .base import Base

        importlib.import_module("mattermostdriver.version")

        class Sly(Base):
            pass
    """)
    done = run_python(f"""
        from pathlib import Path
        from plugin.mm_catalog import CatalogError, load_groups
        try:
            load_groups(Path({str(folder)!r}), "plugin._mm_sly", [("sly", "Sly")])
        except CatalogError as exc:
            print(exc)
    """)
    assert done.returncode == 0, done.stderr
    assert "import the mattermostdriver package itself" in done.stdout


def test_a_missing_driver_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(CatalogError, match=r"mattermostdriver is not installed \(pip install"):
        mm_catalog.endpoints_folder()


def test_a_missing_class_is_named(tmp_path: Path, fake_package: str) -> None:
    folder = endpoints(tmp_path, posts="from .base import Base\n")
    with pytest.raises(CatalogError, match=r"posts\.py has no class Posts"):
        load_groups(folder, fake_package, [("posts", "Posts")])
