"""The environment: every variable, every problem at once, and never a secret in a message."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from gateway.config.environment import Environment, referenced_variables, unknown_variables
from gateway.config.load import load_config
from gateway.errors import ConfigError

EXAMPLE: Final = Path(__file__).resolve().parents[2] / "examples" / "leadgate.yaml"

SECRET: Final = "s3cr3t-" + "x" * 40
OLD_SECRET: Final = "0ld-s3cr3t-" + "y" * 40
REDIS_PASSWORD: Final = "hunter2-redis-pass"
REDIS_URL: Final = f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"


def _error(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        Environment.from_environ(environ)
    return raised.value


def _assert_no_secret(text: str) -> None:
    for secret in (SECRET, OLD_SECRET, REDIS_PASSWORD, SECRET[:8], OLD_SECRET[:8]):
        assert secret not in text


def test_defaults() -> None:
    env = Environment.from_environ({})
    assert env == Environment()
    assert env.config_path is None
    assert env.redis_url is None
    assert env.fingerprint_keys == ()
    assert (env.host, env.port, env.log_level) == ("127.0.0.1", 8080, "info")


def test_a_key_names_its_scheme() -> None:
    env = Environment.from_environ(
        {
            "LEADGATE_FINGERPRINT_KEY": f"k2:sha256:{SECRET}",
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET}, k0:raw:{'z' * 32}",
        }
    )
    keys = env.fingerprint_keys
    assert [(k.id, k.scheme) for k in keys] == [("k2", "sha256"), ("k1", "raw"), ("k0", "raw")]
    assert keys[0].secret == SECRET.encode()  # the scheme is not part of the secret
    assert keys[2].secret == b"z" * 32


def test_every_variable() -> None:
    env = Environment.from_environ(
        {
            "LEADGATE_CONFIG": "/etc/leadgate/leadgate.yaml",
            "LEADGATE_REDIS_URL": REDIS_URL,
            "LEADGATE_FINGERPRINT_KEY": f"k2:{SECRET}",
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET}, k0:{'z' * 32}",
            "LEADGATE_HOST": "10.0.0.5",
            "LEADGATE_PORT": "9000",
            "LEADGATE_LOG_LEVEL": "DEBUG",
            "PATH": "/usr/bin",  # other variables are none of our business
        }
    )
    assert env.config_path == "/etc/leadgate/leadgate.yaml"
    assert env.redis_url == REDIS_URL
    assert [k.id for k in env.fingerprint_keys] == ["k2", "k1", "k0"]
    assert env.fingerprint_keys[0].secret == SECRET.encode()
    assert env.fingerprint_keys[1].secret == OLD_SECRET.encode()
    assert (env.host, env.port, env.log_level) == ("10.0.0.5", 9000, "debug")


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "redis").write_text(REDIS_URL + "\n")
    (tmp_path / "key").write_text(f"k2:{SECRET}\n")
    (tmp_path / "previous").write_text(f"k1:{OLD_SECRET}\nk0:{'z' * 32}\n")
    env = Environment.from_environ(
        {
            "LEADGATE_REDIS_URL_FILE": str(tmp_path / "redis"),
            "LEADGATE_FINGERPRINT_KEY_FILE": str(tmp_path / "key"),
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS_FILE": str(tmp_path / "previous"),
        }
    )
    assert env.redis_url == REDIS_URL
    assert [(k.id, k.secret) for k in env.fingerprint_keys] == [
        ("k2", SECRET.encode()),
        ("k1", OLD_SECRET.encode()),
        ("k0", b"z" * 32),
    ]


def test_a_non_ascii_secret_is_used_as_utf8() -> None:
    secret = "é" * 32
    env = Environment.from_environ({"LEADGATE_FINGERPRINT_KEY": f"k1:{secret}"})
    assert env.fingerprint_keys[0].secret == secret.encode("utf-8")


def test_empty_variables_count_as_unset() -> None:
    env = Environment.from_environ(
        {"LEADGATE_REDIS_URL": "", "LEADGATE_REDIS_URL_FILE": "", "LEADGATE_PORT": " "}
    )
    assert env == Environment()


def test_repr_shows_no_secret() -> None:
    env = Environment.from_environ(
        {
            "LEADGATE_REDIS_URL": REDIS_URL,
            "LEADGATE_FINGERPRINT_KEY": f"k2:{SECRET}",
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET}",
        }
    )
    for text in (repr(env), str(env)):
        _assert_no_secret(text)
        assert "redis.internal" not in text
        assert "k2" in text  # the key ids help, and are not secret


# (environment, the variable the issue names)
BAD: Final[list[tuple[dict[str, str], str]]] = [
    ({"LEADGATE_REDIS_URL": REDIS_URL, "LEADGATE_REDIS_URL_FILE": "/x"}, "LEADGATE_REDIS_URL"),
    ({"LEADGATE_REDIS_URL": f"http://:{REDIS_PASSWORD}@h/"}, "LEADGATE_REDIS_URL"),
    ({"LEADGATE_REDIS_URL": f"{REDIS_PASSWORD}@h:6379"}, "LEADGATE_REDIS_URL"),
    ({"LEADGATE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@[::1"}, "LEADGATE_REDIS_URL"),
    ({"LEADGATE_REDIS_URL_FILE": "/nonexistent/redis-url"}, "LEADGATE_REDIS_URL_FILE"),
    ({"LEADGATE_FINGERPRINT_KEY": SECRET}, "LEADGATE_FINGERPRINT_KEY"),  # no id
    ({"LEADGATE_FINGERPRINT_KEY": f"K1:{SECRET}"}, "LEADGATE_FINGERPRINT_KEY"),
    ({"LEADGATE_FINGERPRINT_KEY": f"toolongid:{SECRET}"}, "LEADGATE_FINGERPRINT_KEY"),
    ({"LEADGATE_FINGERPRINT_KEY": f":{SECRET}"}, "LEADGATE_FINGERPRINT_KEY"),
    ({"LEADGATE_FINGERPRINT_KEY": "k1:" + SECRET[:31]}, "LEADGATE_FINGERPRINT_KEY"),
    # written the wrong way round: the "id" is a piece of the secret, so it is not shown either
    ({"LEADGATE_FINGERPRINT_KEY": f"{SECRET[:8]}:k1"}, "LEADGATE_FINGERPRINT_KEY"),
    (
        {"LEADGATE_FINGERPRINT_KEY": f"k1:{SECRET}", "LEADGATE_FINGERPRINT_KEY_FILE": "/x"},
        "LEADGATE_FINGERPRINT_KEY",
    ),
    (
        {"LEADGATE_FINGERPRINT_KEY": f"k1:{SECRET}", "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": "k0"},
        "LEADGATE_FINGERPRINT_PREVIOUS_KEYS[0]",
    ),
    (
        {
            "LEADGATE_FINGERPRINT_KEY": f"k1:{SECRET}",
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET}",
        },
        "LEADGATE_FINGERPRINT_PREVIOUS_KEYS[0]",
    ),
    (
        {
            "LEADGATE_FINGERPRINT_KEY": f"k2:{SECRET}",
            "LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET},k1:{OLD_SECRET}",
        },
        "LEADGATE_FINGERPRINT_PREVIOUS_KEYS[1]",
    ),
    (
        {"LEADGATE_FINGERPRINT_PREVIOUS_KEYS": f"k1:{OLD_SECRET}"},
        "LEADGATE_FINGERPRINT_PREVIOUS_KEYS",
    ),
    ({"LEADGATE_PORT": "http"}, "LEADGATE_PORT"),
    ({"LEADGATE_PORT": "0"}, "LEADGATE_PORT"),
    ({"LEADGATE_PORT": "65536"}, "LEADGATE_PORT"),
    ({"LEADGATE_PORT": "-1"}, "LEADGATE_PORT"),
    ({"LEADGATE_PORT": "٨٠"}, "LEADGATE_PORT"),  # Arabic-Indic digits: isdigit() but not a port
    ({"LEADGATE_LOG_LEVEL": "verbose"}, "LEADGATE_LOG_LEVEL"),
]


@pytest.mark.parametrize(("environ", "variable"), BAD, ids=[v for _, v in BAD])
def test_a_bad_variable_is_named_and_its_secret_never_shown(
    environ: dict[str, str], variable: str
) -> None:
    error = _error(environ)
    assert variable in [issue.path for issue in error.issues], error.issues
    _assert_no_secret(str(error))
    assert "redis.internal" not in str(error)


def test_an_unreadable_or_empty_secret_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    error = _error(
        {
            "LEADGATE_REDIS_URL_FILE": str(tmp_path / "missing"),
            "LEADGATE_FINGERPRINT_KEY_FILE": str(tmp_path / "empty"),
        }
    )
    assert [str(issue) for issue in error.issues] == [
        f"LEADGATE_REDIS_URL_FILE: cannot read '{tmp_path / 'missing'}': No such file or directory",
        f"LEADGATE_FINGERPRINT_KEY_FILE: '{tmp_path / 'empty'}' is empty",
    ]


def test_a_bad_key_in_a_file_names_the_file_variable(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k1:short")
    error = _error({"LEADGATE_FINGERPRINT_KEY_FILE": str(tmp_path / "key")})
    assert [issue.path for issue in error.issues] == ["LEADGATE_FINGERPRINT_KEY_FILE"]
    assert "short" not in str(error)


def test_every_problem_is_reported_in_one_error() -> None:
    error = _error(
        {
            "LEADGATE_REDIS_URL": "http://x",
            "LEADGATE_FINGERPRINT_KEY": "k1:short",
            "LEADGATE_PORT": "http",
            "LEADGATE_LOG_LEVEL": "loud",
        }
    )
    assert [issue.path for issue in error.issues] == [
        "LEADGATE_REDIS_URL",
        "LEADGATE_FINGERPRINT_KEY",
        "LEADGATE_PORT",
        "LEADGATE_LOG_LEVEL",
    ]


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://:pw@cache:6380", "unix:///run/redis.sock"]
)
def test_redis_url_schemes(url: str) -> None:
    assert Environment.from_environ({"LEADGATE_REDIS_URL": url}).redis_url == url


def test_unknown_variables_are_listed_for_a_warning() -> None:
    environ = {
        "LEADGATE_REDIS_URI": "redis://x",  # a typo that would select the embedded store
        "LEADGATE_PORT": "80",
        "LEADGATE_FINGERPRINT_KEY_FILE": "/k",
        "LEADGATE_FAILPOINTS": "",
        "LEADGATE_REDIS_ALLOW_EVICTION": "true",
        "HOME": "/root",
    }
    assert unknown_variables(environ) == ["LEADGATE_REDIS_URI"]


def test_the_configs_own_secret_names_are_not_flagged() -> None:
    """``secret_env: LEADGATE_WEBHOOK_SECRET_ACME`` is the docs' own naming style."""
    config = load_config(EXAMPLE)
    referenced = referenced_variables(config)
    assert referenced == {
        "LEADGATE_WEBHOOK_SECRET_ACME",
        "LEADGATE_NOVABANK_TOKEN",
        "LEADGATE_SOLARIS_API_KEY",
        "LEADGATE_WEBHOOK_SECRET_HELIO",
        "LEADGATE_VOLTAIC_TOKEN",
    }
    environ = {name: "x" for name in referenced} | {"LEADGATE_REDIS_URI": "redis://x"}
    assert unknown_variables(environ, referenced) == ["LEADGATE_REDIS_URI"]
    # Without the config, they would look like typos.
    assert len(unknown_variables(environ)) == len(referenced) + 1
