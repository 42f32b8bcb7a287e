"""mattermostdriver's endpoint catalogue, without the rest of mattermostdriver.

The endpoint classes (`Posts.create_post`, `Users.get_user`, ...) know each REST call's method,
path and body, and hand the call to their client's `get`, `post`, `put`, `delete` or
`make_request`. They are all the bot takes from mattermostdriver: its HTTP is
`mm_http.AsyncClient` and its websocket `stream`. Importing the `mattermostdriver` package,
though, runs its `__init__`, which brings in its blocking client and websocket, and with them
`requests`, `urllib3`, `charset_normalizer`, `idna` and `websockets`: several megabytes of
memory for code the bot never runs.

So the installed package's `endpoints` folder is loaded here as a package of our own,
`plugin._mm_endpoints`, found with `importlib.util.find_spec` (which reads no module of it). The
endpoint modules import one another relatively (`from .base import Base`), so they resolve
inside that package, and `mattermostdriver` itself is never touched: a process that imports it
later gets the real one. Should an endpoint module import anything of mattermostdriver's
outside its folder, loading stops with `CatalogError`, at start rather than with a surprise
later.

`Endpoints` holds one object of each endpoint group over a client, named as
`mattermostdriver.driver.Driver` names them (`.posts`, `.users`, `.channels`, ...).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .mm_http import AsyncClient

__all__ = ["GROUPS", "PACKAGE", "CatalogError", "Endpoints", "Group", "load_groups"]

#: The name the endpoint modules are loaded under.
PACKAGE = __name__.rpartition(".")[0] + "._mm_endpoints"

#: Each endpoint group's attribute name, as Driver has it, and its module and class.
GROUPS: dict[str, tuple[str, str]] = {
    "users": ("users", "Users"),
    "teams": ("teams", "Teams"),
    "channels": ("channels", "Channels"),
    "posts": ("posts", "Posts"),
    "files": ("files", "Files"),
    "preferences": ("preferences", "Preferences"),
    "status": ("status", "Status"),
    "emoji": ("emoji", "Emoji"),
    "reactions": ("reactions", "Reactions"),
    "system": ("system", "System"),
    "webhooks": ("webhooks", "Webhooks"),
    "commands": ("commands", "Commands"),
    "compliance": ("compliance", "Compliance"),
    "cluster": ("cluster", "Cluster"),
    "brand": ("brand", "Brand"),
    "oauth": ("oauth", "OAuth"),
    "roles": ("roles", "Roles"),
    "saml": ("saml", "SAML"),
    "ldap": ("ldap", "LDAP"),
    "elasticsearch": ("elasticsearch", "Elasticsearch"),
    "data_retention": ("data_retention", "DataRetention"),
    "bots": ("bots", "Bots"),
    "opengraph": ("opengraph", "Opengraph"),
    "integration_actions": ("integration_actions", "IntegrationActions"),
}

_DRIVER = "mattermostdriver"


class CatalogError(ImportError):
    """The installed mattermostdriver's endpoints cannot be loaded on their own."""


def endpoints_folder() -> Path:
    """The installed mattermostdriver's `endpoints` folder (nothing of it is imported)."""
    spec = importlib.util.find_spec(_DRIVER)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise CatalogError(f"{_DRIVER} is not installed (pip install '{_DRIVER}>=7.3.2,<8')")
    for location in locations:
        folder = Path(location) / "endpoints"
        if (folder / "__init__.py").is_file():
            return folder
    raise CatalogError(f"the installed {_DRIVER} ({locations[0]}) has no endpoints folder")


def load_groups(folder: Path | None = None, package: str = PACKAGE,
                groups: Iterable[tuple[str, str]] | None = None) -> dict[str, type[Any]]:
    """The endpoint classes by module and class name (`"posts.Posts"`), loaded from `folder`
    (the installed mattermostdriver's by default) as `package`; loading again gives the classes
    already loaded."""
    folder = folder or endpoints_folder()
    wanted = list(groups if groups is not None else GROUPS.values())
    had_driver = _DRIVER in sys.modules
    root = _package(folder, package)
    classes: dict[str, type[Any]] = {}
    for module_name, class_name in wanted:
        try:
            module = importlib.import_module(f"{package}.{module_name}")
        except ImportError as exc:
            raise CatalogError(f"{folder / (module_name + '.py')} cannot be loaded on its own "
                               f"({exc}): it imports something outside its folder") from exc
        found = getattr(module, class_name, None)
        if not isinstance(found, type):
            raise CatalogError(f"{folder / (module_name + '.py')} has no class {class_name}")
        classes[f"{module_name}.{class_name}"] = found
    if not had_driver and _DRIVER in sys.modules:
        raise CatalogError(f"the endpoints in {folder} import the {_DRIVER} package itself "
                           "(and with it its blocking client); they cannot be used on their own")
    for module in [root, *(sys.modules[n] for n in list(sys.modules)
                           if n.startswith(package + "."))]:
        _check_outside(module, package, folder)
    return classes


def _package(folder: Path, package: str) -> ModuleType:
    """`folder` imported as `package` (once)."""
    loaded = sys.modules.get(package)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(
        package, folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise CatalogError(f"{folder} cannot be loaded as a package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[package]
        raise
    parent, _, child = package.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


def _check_outside(module: ModuleType, package: str, folder: Path) -> None:
    """Fail when a loaded endpoint module holds something of mattermostdriver's, or of our
    own package next to it (a `from ..x import` resolves there), that is not of its folder."""
    parent = package.rpartition(".")[0]
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        home = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__",
                                                                            None)
        if not isinstance(home, str) or home == package or home.startswith(package + "."):
            continue
        top = home.partition(".")[0]
        if top == _DRIVER or (parent and (home == parent or home.startswith(parent + "."))):
            raise CatalogError(f"{module.__name__} (in {folder}) takes {name} from {home}, "
                               "outside its folder; the endpoints cannot be used on their own")


class Group(Protocol):
    """One endpoint group (`Posts`, `Users`, ...): each of its methods builds a call and
    returns the client's coroutine for it."""

    client: AsyncClient

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]: ...


_CLASSES = load_groups()


class Endpoints:
    """The endpoint groups over one client, by the names mattermostdriver's `Driver` gives
    them; `client` is that client, for the calls the catalogue lacks."""

    users: Group
    teams: Group
    channels: Group
    posts: Group
    files: Group
    preferences: Group
    status: Group
    emoji: Group
    reactions: Group
    system: Group
    webhooks: Group
    commands: Group
    compliance: Group
    cluster: Group
    brand: Group
    oauth: Group
    roles: Group
    saml: Group
    ldap: Group
    elasticsearch: Group
    data_retention: Group
    bots: Group
    opengraph: Group
    integration_actions: Group

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        for attribute, (module_name, class_name) in GROUPS.items():
            setattr(self, attribute, _CLASSES[f"{module_name}.{class_name}"](client))
