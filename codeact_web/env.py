"""Small typed readers for environment variables, used by settings.py."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from chat.agent.formats import FORMATS as ACTION_FORMATS  # pure: no Django, no app

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no), got {raw!r}")


def _env_number[N: (int, float)](
    name: str, default: N, cast: type[N], kind: str, minimum: N | None
) -> N:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    return _env_number(name, default, int, "an integer", minimum)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    return _env_number(name, default, float, "a number", minimum)


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: str = "") -> list[str]:
    """A comma-separated list of IP networks (an address alone is one host), checked
    here so that a typo stops the process instead of refusing every request."""
    entries = env_list(name, default)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks, got {entry!r}"
            ) from None
    return entries


def env_ports(name: str, default: str) -> list[int]:
    """A comma-separated list of TCP ports."""
    ports = []
    for item in env_list(name, default):
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise ImproperlyConfigured(f"{name} must list TCP ports (1-65535), got {item!r}")
        ports.append(int(item))
    return ports


def env_secret(name: str, default: str = "", default_file: Path | None = None) -> str:
    """Read NAME, else the file named by NAME_FILE, else default_file, else default.

    Docker and Kubernetes secrets arrive as files; reading NAME_FILE lets a
    deployment keep secrets out of the environment of every process.
    """
    value = os.environ.get(name)
    if value:
        return value
    path_name = os.environ.get(f"{name}_FILE")
    if path_name:
        try:
            return Path(path_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path_name} cannot be read: {exc}") from None
    if default_file is not None and default_file.is_file():
        return default_file.read_text().strip()
    return default


_MODEL_FIELDS = {
    "key": str,
    "label": str,
    "base_url": str,
    "model": str,
    "api_key": str,
    "api_key_env": str,
    "api_key_file": str,
    "temperature": float,
    "max_tokens": int,
    "max_executions": int,
    "read_timeout": float,
    "action_format": str,
}


def action_format(value: object, where: str) -> str:
    """How a model writes code (chat.agent.formats), checked: one of ACTION_FORMATS."""
    name = str(value).strip().lower()
    if name not in ACTION_FORMATS:
        raise ImproperlyConfigured(
            f"{where} must be one of {', '.join(ACTION_FORMATS)}, got {value!r}"
        )
    return name


def env_action_format(name: str, default: str) -> str:
    return action_format(os.environ.get(name, "").strip() or default, name)


def env_models(name: str, defaults: dict[str, object]) -> list[dict[str, object]]:
    """Model endpoints from NAME (a JSON list) or the JSON file named by NAME_FILE.

    Each entry needs key, base_url and model; the rest falls back to
    `defaults`. `action_format` says how the model writes code: `execute`
    tags, python `fence`s or function calls (`tool`). The API key comes from
    `api_key`, from the environment variable named by `api_key_env`, or from
    the file `api_key_file`, so a config file can be shared without its secrets.
    """
    import json

    raw = os.environ.get(name, "")
    path_name = os.environ.get(f"{name}_FILE")
    if not raw and path_name:
        try:
            raw = Path(path_name).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path_name} cannot be read: {exc}") from None
    if not raw.strip():
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ImproperlyConfigured(f"{name} must be a non-empty JSON list of model objects")
    models = [_model_entry(name, index, entry, defaults) for index, entry in enumerate(entries)]
    keys = [m["key"] for m in models]
    if len(set(keys)) != len(keys):
        raise ImproperlyConfigured(f"{name}: model keys must be unique, got {keys}")
    return models


def _model_entry(
    name: str, index: int, entry: object, defaults: dict[str, object]
) -> dict[str, object]:
    where = f"{name}[{index}]"
    if not isinstance(entry, dict):
        raise ImproperlyConfigured(f"{where} must be an object")
    unknown = set(entry) - set(_MODEL_FIELDS)
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    for required in ("key", "base_url", "model"):
        if not entry.get(required):
            raise ImproperlyConfigured(f"{where} needs '{required}'")
    model: dict[str, object] = dict(defaults)
    for field, cast in _MODEL_FIELDS.items():
        if field in entry:
            try:
                model[field] = cast(entry[field])
            except (TypeError, ValueError):
                raise ImproperlyConfigured(f"{where}.{field} must be {cast.__name__}") from None
    if "action_format" in model:
        model["action_format"] = action_format(model["action_format"], f"{where}.action_format")
    key_env = str(model.pop("api_key_env", "") or "")
    key_file = str(model.pop("api_key_file", "") or "")
    if key_env:
        model["api_key"] = os.environ.get(key_env, "")
    elif key_file:
        try:
            model["api_key"] = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{where}.api_key_file cannot be read: {exc}") from None
    model.setdefault("label", model["key"])
    if not model.get("label"):
        model["label"] = model["key"]
    return model


def env_url_with_password(url: str, password: str) -> str:
    """`url` with `password` put in (a Redis password kept in a secret file, say)."""
    if not password:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
