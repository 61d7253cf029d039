"""Settings come from IDENTITY_* variables, typed, with clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from identity.config import Settings, env_names


def test_values_are_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "IDENTITY_ACCESS_TOKEN_TTL_SECONDS": "60",
            "IDENTITY_AUDIENCES": "cinema, billing",
            "IDENTITY_TRUSTED_PROXIES": "127.0.0.2, 10.0.0.0/8,::1/128",
            "IDENTITY_SECRET_KEY": "s" * 40,
        }
    )
    assert settings.access_token_ttl == timedelta(seconds=60)
    assert settings.audiences == ("cinema", "billing")
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.2/32", "10.0.0.0/8", "::1/128"]
    assert settings.require_secret_key() == b"s" * 40


def test_a_proxy_entry_that_is_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match=r"IDENTITY_TRUSTED_PROXIES.*envoy"):
        Settings.from_env({"IDENTITY_TRUSTED_PROXIES": "10.0.0.0/8,envoy"})


def test_the_replaced_hop_count_stops_start_up_with_its_replacement() -> None:
    with pytest.raises(ValueError, match="replaced by IDENTITY_TRUSTED_PROXIES"):
        Settings.from_env({"IDENTITY_TRUSTED_PROXY_HOPS": "1"})
    # 0 (trust nobody) meant what the default means now.
    assert Settings.from_env({"IDENTITY_TRUSTED_PROXY_HOPS": "0"}).trusted_proxies == ()


def test_tls_files_must_come_in_pairs_and_exist(tmp_path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    with pytest.raises(ValueError, match="go together"):
        Settings.from_env({"IDENTITY_TLS_CERT_FILE": str(pem)}).check_tls_files()
    with pytest.raises(ValueError, match="IDENTITY_TLS_KEY_FILE: no such file"):
        Settings.from_env(
            {"IDENTITY_TLS_CERT_FILE": str(pem), "IDENTITY_TLS_KEY_FILE": "/no/such.key"}
        ).check_tls_files()
    both = Settings.from_env({"IDENTITY_TLS_CERT_FILE": str(pem), "IDENTITY_TLS_KEY_FILE": str(pem)})
    both.check_tls_files()
    assert both.tls_cert_file == str(pem)


def test_secrets_never_show_themselves() -> None:
    settings = Settings.from_env({"IDENTITY_SECRET_KEY": "super-secret-value-" * 3})
    assert "super-secret" not in repr(settings)
    assert "super-secret" not in str(settings.secret_key)


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="IDENTITY_BCRYPT_ROUNDS"):
        Settings.from_env({"IDENTITY_BCRYPT_ROUNDS": "twelve"})


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="IDENTITY_SECRET_KEY"):
        Settings.from_env({"IDENTITY_SECRET_KEY": "short"}).require_secret_key()


def test_every_setting_has_a_documented_variable() -> None:
    names = [name for name, _ in env_names()]
    assert len(names) == len(set(names))
    assert {"IDENTITY_DATABASE_URL", "IDENTITY_REDIS_URL", "IDENTITY_GRPC_LISTEN"} <= set(names)
    readme = (__import__("pathlib").Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in names if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document {missing}"


def test_secret_key_file_is_read_without_its_newline(tmp_path) -> None:
    path = tmp_path / "secret-key"
    path.write_text("f" * 40 + "\n")
    settings = Settings.from_env({"IDENTITY_SECRET_KEY_FILE": str(path)})
    assert settings.require_secret_key() == b"f" * 40


def test_secret_key_file_problems_name_the_variable(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"IDENTITY_SECRET_KEY_FILE: cannot read .*absent"):
        Settings.from_env({"IDENTITY_SECRET_KEY_FILE": str(tmp_path / "absent")})
    path = tmp_path / "secret-key"
    path.write_text("f" * 40)
    with pytest.raises(ValueError, match="not both"):
        Settings.from_env({"IDENTITY_SECRET_KEY_FILE": str(path), "IDENTITY_SECRET_KEY": "g" * 40})
