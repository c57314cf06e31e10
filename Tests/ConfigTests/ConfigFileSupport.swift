import Config

/// A CA bundle that passes the Config module's PEM check (base64 of a DER sequence).
let samplePEM = """
    -----BEGIN CERTIFICATE-----
    MIIBAAAAAAAAAAAA
    -----END CERTIFICATE-----

    """

/// Loads `yaml` as the file `/etc/kip/config.yaml` with `flags` laid over it.
func loadFile(_ yaml: String, flags: ProxyFlags = ProxyFlags()) throws(ConfigurationError) -> LoadedConfiguration {
    try ConfigurationLoader.load(
        flags: flags, file: ConfigurationFile(path: "/etc/kip/config.yaml", bytes: Array(yaml.utf8)))
}

/// Every problem loading `yaml` reports, as `path: message` lines ([] when it loads).
func problems(_ yaml: String, flags: ProxyFlags = ProxyFlags()) -> [String] {
    do {
        _ = try loadFile(yaml, flags: flags)
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

/// A proxy-shape file with one issuer whose `issuer:` block is `issuer` and whose remaining
/// entry keys are `entry` (each already indented for the entry).
func oneIssuer(issuer: String = "url: https://idp.example.com\n      audiences: [kubernetes]", entry: String = "")
    -> String
{
    """
    jwt:
      - issuer:
          \(issuer)
    \(entry)
    """
}
