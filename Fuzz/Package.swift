// swift-tools-version:6.2
import PackageDescription

// The fuzz targets, kept out of the main package so that `swift build` there never builds them.
// scripts/fuzz builds this package with `-sanitize=fuzzer,address -parse-as-library`; each
// product is a libFuzzer binary whose entry point is `LLVMFuzzerTestOneInput`.
let core = Target.Dependency.product(name: "KubeImpersonateProxyCore", package: "kube-impersonate-proxy")

let package = Package(
    name: "kube-impersonate-proxy-fuzz",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fuzz-token", targets: ["FuzzToken"]),
        .executable(name: "fuzz-request-head", targets: ["FuzzRequestHead"]),
        .executable(name: "fuzz-config", targets: ["FuzzConfig"]),
        .executable(name: "fuzz-kubeconfig", targets: ["FuzzKubeconfig"]),
    ],
    dependencies: [
        .package(name: "kube-impersonate-proxy", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        .target(name: "CFuzzerDriver"),
        .target(
            name: "FuzzSupport",
            dependencies: [
                "CFuzzerDriver", core,
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .executableTarget(name: "FuzzToken", dependencies: ["FuzzSupport", core]),
        .executableTarget(
            name: "FuzzRequestHead",
            dependencies: [
                "FuzzSupport", core,
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzSupport", core]),
        .executableTarget(name: "FuzzKubeconfig", dependencies: ["FuzzSupport", core]),
    ]
)
