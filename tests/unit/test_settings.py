"""Settings are checked at start, one variable at a time, with its name in the message; key files
are the owner's alone."""

from __future__ import annotations

import os
import stat

import pytest

from antaca_api.settings import Environment, Settings, SettingsError, masked_settings
from antaca_auth.cardkeys import CardKeys
from antaca_auth.keyfiles import KeyFileError, read_private, write_private


@pytest.mark.parametrize("variable, value, words", [
    ("ANTACA_PORT", "eighty", "not a whole number"),
    ("ANTACA_METRICS_PORT", "70000", "not a TCP port"),
    ("ANTACA_TLS_PORT", "-1", "at least 0"),
    ("ANTACA_SWEEP_INTERVAL", "0", "positive number of seconds"),
    ("ANTACA_FEE_INTERVAL", "soon", "not a number of seconds"),
    ("ANTACA_ISO8583_TLS", "maybe", "not a flag"),
    ("ANTACA_ISO8583_NETWORK_ID", "net-1", "not a UUID"),
    ("ANTACA_AUTHORIZATION_BATCH_SIZE_MAX", "lots", "not a whole number"),
    ("ANTACA_AUTHORIZATION_BATCHING", "sideways", "not one of the accepted values"),
    ("ANTACA_TLS_CERTIFICATE_FILE", "/no/such/file.pem", "go together"),
])
def test_a_bad_value_names_its_variable(variable, value, words):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(variable) and words in message and "\n" not in message


def test_an_out_of_range_engine_setting_is_a_settings_error():
    with pytest.raises(SettingsError, match="ANTACA_AUTHORIZATION_"):
        Settings.from_env({"ANTACA_AUTHORIZATION_BATCH_SIZE_MAX": "100000"})


def test_defaults_and_given_values(tmp_path):
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({}).metrics_port == 9464
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    cert.write_text("x")
    key.write_text("x")
    settings = Settings.from_env({"ANTACA_METRICS_PORT": "9500", "ANTACA_SMTP_STARTTLS": "off",
                                  "ANTACA_TLS_CERTIFICATE_FILE": str(cert),
                                  "ANTACA_TLS_KEY_FILE": str(key)})
    assert (settings.metrics_port, settings.smtp_starttls, settings.tls_key_file) == (9500, False, key)


def test_production_refuses_the_development_ca_and_private_webhook_targets(tmp_path):
    with pytest.raises(SettingsError, match="ANTACA_PARTNER_CA_CERTIFICATE_FILE is required"):
        Settings.from_env({"ANTACA_ENVIRONMENT": "production"}).check_production()
    files = {}
    for name in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem"):
        files[name] = tmp_path / name
        files[name].write_text("x")
    production = {"ANTACA_ENVIRONMENT": "production",
                  "ANTACA_PARTNER_CA_CERTIFICATE_FILE": str(files["ca.pem"]),
                  "ANTACA_PARTNER_CA_KEY_FILE": str(files["ca-key.pem"])}
    with pytest.raises(SettingsError, match="ANTACA_TLS_CERTIFICATE_FILE is required"):
        Settings.from_env(production).check_production()
    production.update(ANTACA_TLS_CERTIFICATE_FILE=str(files["server.pem"]),
                      ANTACA_TLS_KEY_FILE=str(files["server-key.pem"]))
    assert Settings.from_env(production).production
    Settings.from_env(production).check_production()
    with pytest.raises(SettingsError, match="ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS"):
        Settings.from_env({**production, "ANTACA_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes"})


def test_config_masks_secrets(monkeypatch):
    monkeypatch.setenv("ANTACA_CARD_KEYS", '{"secret": 1}')
    monkeypatch.setenv("ANTACA_DATABASE_URL", "postgresql://antaca:s3cr3t@db:5432/antaca")
    shown = masked_settings(Settings.from_env({"ANTACA_SMTP_PASSWORD": "hunter2"}))
    assert shown["smtp_password"] == "********" and shown["ANTACA_CARD_KEYS"] == "********"
    assert "hunter2" not in repr(shown) and "secret" not in repr(shown)
    assert shown["ANTACA_DATABASE_URL"] == "postgresql://antaca:********@db:5432/antaca"
    assert "s3cr3t" not in repr(shown)
    assert shown["engine.batch_size_max"] == 512 and shown["metrics_port"] == 9464


def test_key_files_are_written_0600_and_refused_when_others_may_read_them(tmp_path):
    path = tmp_path / "keys" / "card-keys.json"
    keys = CardKeys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CardKeys.load_or_create(path) == keys
    for mode in (0o640, 0o604, 0o620):
        os.chmod(path, mode)
        with pytest.raises(KeyFileError, match="chmod 600"):
            CardKeys.load_or_create(path)
    other = tmp_path / "other.pem"
    other.write_bytes(b"old")
    os.chmod(other, 0o644)
    write_private(other, b"new", replace=True)  # rewriting narrows the mode too
    assert stat.S_IMODE(other.stat().st_mode) == 0o600 and read_private(other) == b"new"


def test_a_new_pan_key_becomes_active_and_the_old_ones_stay():
    keys = CardKeys.generate()
    rotated = keys.with_new_pan_key()
    assert rotated.active_pan_key == "k2" and set(rotated.pan_keys) == {"k1", "k2"}
    assert rotated.pan_keys["k1"] == keys.pan_keys["k1"] and rotated.fingerprint_key == keys.fingerprint_key
    assert rotated.with_new_pan_key().active_pan_key == "k3"


def test_operators_bring_their_own_ca_and_certificate_and_production_refuses_the_development_ca(
        tmp_path):
    from antaca_api.pki import CertificateAuthority
    from antaca_api.server import load_keys, server_tls

    operator, _ = CertificateAuthority.load_or_create(tmp_path / "operator", name="Operator CA")
    certificate, key = operator.server_certificate(["localhost"])
    development, _ = CertificateAuthority.load_or_create(tmp_path / "development")
    own = {"environment": Environment.PRODUCTION, "key_dir": tmp_path / "keys",
           "tls_certificate_file": certificate, "tls_key_file": key}
    settings = Settings(**own, partner_ca_certificate_file=operator.cert_path,
                        partner_ca_key_file=tmp_path / "operator" / "ca-key.pem")
    _, ca, _ = load_keys(settings)
    assert not ca.is_development and ca.cert_path == operator.cert_path
    assert ca.cert == operator.cert
    server_tls(ca, settings)  # the operator's chain loads
    assert not (tmp_path / "keys" / "ca.pem").exists()  # no development CA was made
    refused = Settings(**own, partner_ca_certificate_file=development.cert_path,
                       partner_ca_key_file=tmp_path / "development" / "ca-key.pem")
    with pytest.raises(SettingsError, match="development CA is refused"):
        load_keys(refused)
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError):
        server_tls(ca, settings)
