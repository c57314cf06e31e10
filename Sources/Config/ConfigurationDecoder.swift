import Yams

/// Reads a configuration file's YAML into a `ConfigurationDocument`, strictly: a key the shape
/// does not define, or a value of the wrong type, is a problem reported with its YAML path.
/// Decoding goes on after a problem, so one pass reports everything.
enum ConfigurationDecoder {
    /// The `apiVersion`s of kube-apiserver's AuthenticationConfiguration that are accepted.
    static let authenticationAPIVersions = [
        "apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1alpha1",
    ]

    static func decode(yaml text: String, file: String, problems: inout ProblemCollector) -> ConfigurationDocument? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            problems.add(file, "not valid YAML: \(error.summary)")
            return nil
        } catch {
            problems.add(file, "not valid YAML: \(error)")
            return nil
        }
        guard let root, !YAMLField(node: root, path: "").isNull else {
            problems.add(file, "is empty; it must hold one YAML mapping (see the README's \"Config file\" section)")
            return nil
        }
        guard case .mapping(let top) = root else {
            problems.add(
                file,
                "must hold a YAML mapping (key: value) at the top level, not \(YAMLField(node: root, path: "").kindDescription)"
            )
            return nil
        }

        var document = ConfigurationDocument()
        let kind = top["kind"].flatMap { YAMLField(node: $0, path: "kind").string(problems: &problems) }
        let apiVersion = top["apiVersion"].flatMap {
            YAMLField(node: $0, path: "apiVersion").string(problems: &problems)
        }
        switch kind?.value {
        case nil where apiVersion != nil:
            problems.add(
                "kind", "is required with apiVersion; a kube-apiserver file has kind: AuthenticationConfiguration")
            return nil
        case nil, "ProxyConfiguration"?:
            if apiVersion != nil {
                problems.add(
                    "apiVersion",
                    "unknown field: the proxy's own file has no apiVersion (a kube-apiserver file has kind: AuthenticationConfiguration)"
                )
            }
            document.shape = .proxy
        case "AuthenticationConfiguration"?:
            guard let version = apiVersion?.value, authenticationAPIVersions.contains(version) else {
                problems.add(
                    "apiVersion",
                    (apiVersion.map { "\"\($0.value)\" is not supported" } ?? "is required")
                        + "; use one of " + authenticationAPIVersions.joined(separator: ", "))
                return nil
            }
            document.shape = .authenticationConfiguration(apiVersion: version)
        case let other?:
            problems.add(
                "kind",
                "\"\(other)\" is not supported; use ProxyConfiguration (or no kind) or AuthenticationConfiguration")
            return nil
        }

        let allowed =
            document.shape == .proxy
            ? [
                "kind", "listenAddr", "metricsAddr", "tls", "upstream", "tokenCacheTTL", "allowReservedIdentities",
                "readiness", "jwt",
            ]
            : ["apiVersion", "kind", "jwt", "anonymous"]
        guard let fields = YAMLField(node: root, path: "").mapping(allowed: allowed, problems: &problems) else {
            return nil
        }
        document.listenAddress = fields["listenAddr"]?.string(problems: &problems)
        document.metricsAddress = fields["metricsAddr"]?.string(problems: &problems)
        document.tokenCacheTTL = fields["tokenCacheTTL"]?.string(problems: &problems)
        document.allowReservedIdentities = fields["allowReservedIdentities"]?.bool(problems: &problems)
        document.readiness = fields["readiness"]?.string(problems: &problems)
        if let tls = fields["tls"], let values = tls.mapping(allowed: ["certFile", "keyFile"], problems: &problems) {
            document.tls = TLSDocument(
                path: tls.path, certFile: values["certFile"]?.string(problems: &problems),
                keyFile: values["keyFile"]?.string(problems: &problems))
        }
        if let upstream = fields["upstream"],
            let values = upstream.mapping(
                allowed: ["server", "certificateAuthorityFile", "tokenFile", "kubeconfig"], problems: &problems)
        {
            document.upstream = UpstreamDocument(
                path: upstream.path, server: values["server"]?.string(problems: &problems),
                certificateAuthorityFile: values["certificateAuthorityFile"]?.string(problems: &problems),
                tokenFile: values["tokenFile"]?.string(problems: &problems),
                kubeconfig: values["kubeconfig"]?.string(problems: &problems))
        }
        if let anonymous = fields["anonymous"] {
            decodeAnonymous(anonymous, problems: &problems)
            document.notes.append(
                "anonymous: configures kube-apiserver's anonymous authenticator; the proxy never serves anonymous requests and ignores it"
            )
        }
        if let jwt = fields["jwt"], let entries = jwt.sequence(problems: &problems) {
            let shape = document.shape
            document.jwt = entries.map { decodeJWT($0, shape: shape, problems: &problems) }
        }
        return document
    }

    private static func decodeJWT(
        _ field: YAMLField, shape: ConfigurationDocument.Shape, problems: inout ProblemCollector
    ) -> JWTDocument {
        var entry = JWTDocument(path: field.path, kubeAPIServerRules: shape != .proxy)
        let keys =
            shape == .proxy
            ? ["issuer", "name", "claimValidationRules", "claimMappings", "userValidationRules"]
            : ["issuer", "claimValidationRules", "claimMappings", "userValidationRules"]
        guard let fields = field.mapping(allowed: keys, problems: &problems) else { return entry }
        entry.name = fields["name"]?.string(problems: &problems)

        if let issuer = fields["issuer"],
            let values = issuer.mapping(
                allowed: [
                    "url", "discoveryURL", "audiences", "audienceMatchPolicy", "certificateAuthority",
                    "egressSelectorType",
                ], problems: &problems)
        {
            entry.url = values["url"]?.string(problems: &problems)
            entry.discoveryURL = values["discoveryURL"]?.string(problems: &problems)
            entry.audiences = values["audiences"]?.stringList(problems: &problems)
            entry.audienceMatchPolicy = values["audienceMatchPolicy"]?.string(problems: &problems)
            entry.certificateAuthority = values["certificateAuthority"]?.string(problems: &problems)
            entry.egressSelectorType = values["egressSelectorType"]?.string(problems: &problems)
        }

        if let rules = fields["claimValidationRules"], let elements = rules.sequence(problems: &problems) {
            var decoded: [ClaimRuleDocument] = []
            for element in elements {
                var rule = ClaimRuleDocument(path: element.path)
                if let values = element.mapping(
                    allowed: ["claim", "requiredValue", "expression", "message"], problems: &problems)
                {
                    rule.claim = values["claim"]?.string(problems: &problems)
                    rule.requiredValue = values["requiredValue"]?.string(problems: &problems)
                    rule.expression = values["expression"]?.string(problems: &problems)
                    rule.message = values["message"]?.string(problems: &problems)
                }
                decoded.append(rule)
            }
            entry.claimValidationRules = Sourced(decoded, at: rules.path)
        }

        if let mappings = fields["claimMappings"],
            let values = mappings.mapping(allowed: ["username", "groups", "uid", "extra"], problems: &problems)
        {
            entry.username = decodeMapping(values["username"], prefixed: true, problems: &problems)
            entry.groups = decodeMapping(values["groups"], prefixed: true, problems: &problems)
            entry.uid = decodeMapping(values["uid"], prefixed: false, problems: &problems)
            if let extra = values["extra"], let elements = extra.sequence(problems: &problems) {
                for element in elements {
                    _ = element.mapping(allowed: ["key", "valueExpression"], problems: &problems)
                }
                if !elements.isEmpty { entry.extra = extra.path }
            }
        }

        if let rules = fields["userValidationRules"], let elements = rules.sequence(problems: &problems) {
            for element in elements {
                _ = element.mapping(allowed: ["expression", "message"], problems: &problems)
            }
            if !elements.isEmpty { entry.userValidationRules = rules.path }
        }
        return entry
    }

    private static func decodeMapping(
        _ field: YAMLField?, prefixed: Bool, problems: inout ProblemCollector
    ) -> MappingDocument {
        var mapping = MappingDocument()
        guard let field,
            let values = field.mapping(
                allowed: prefixed ? ["claim", "prefix", "expression"] : ["claim", "expression"], problems: &problems)
        else { return mapping }
        mapping.claim = values["claim"]?.string(problems: &problems)
        mapping.prefix = values["prefix"]?.string(problems: &problems)
        mapping.expression = values["expression"]?.string(problems: &problems)
        return mapping
    }

    /// Checks an AuthenticationConfiguration's `anonymous` block is well formed, as kube-apiserver would.
    private static func decodeAnonymous(_ field: YAMLField, problems: inout ProblemCollector) {
        guard let values = field.mapping(allowed: ["enabled", "conditions"], problems: &problems) else { return }
        _ = values["enabled"]?.bool(problems: &problems)
        if let conditions = values["conditions"]?.sequence(problems: &problems) {
            for condition in conditions {
                if let path = condition.mapping(allowed: ["path"], problems: &problems)?["path"] {
                    _ = path.string(problems: &problems)
                }
            }
        }
    }
}
