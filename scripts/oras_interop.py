#!/usr/bin/env python3
"""Pushes and pulls OCI artifacts with the ORAS Python SDK (PyPI `oras`, 0.2.43), not nnsign's
code: the independent client that the registry tests compare `nnsign push` and `nnsign pull`
against.

    python3 scripts/oras_interop.py push --registry 127.0.0.1:PORT --ref REPO:TAG \\
        [--artifact-type T] --file PATH[:MEDIATYPE] ... [--insecure] [--user U --password P]
    python3 scripts/oras_interop.py pull --registry 127.0.0.1:PORT --ref REPO:TAG --out DIR \\
        [--insecure] [--user U --password P]

`push` uploads each file as a layer titled with its file name (org.opencontainers.image.title)
under an image-spec 1.1 manifest with `artifactType` and the empty config, tags it, and prints
the manifest's digest. A file's media type follows its last ':'; without one, a `.nns` file is
the artifact and anything else a shard. `pull` writes every layer into DIR under its title,
checks each one's size and digest (the SDK checks neither), and prints a JSON list of
{title, mediaType, digest, size}.

The SDK's own `push` cannot set `artifactType` and gives the config an unknown media type, so
the manifest is built here and sent with the SDK's blob and manifest uploads. `--insecure`
talks plain HTTP, as the test registry does; credentials go as HTTP Basic.
"""
import argparse, hashlib, json, os, sys, tempfile

import oras.auth
import oras.oci
import oras.provider
import oras.utils

ARTIFACT_TYPE = "application/vnd.nnsign.model.v1"
ARTIFACT_LAYER = "application/vnd.nnsign.artifact.v1"
SHARD_LAYER = "application/vnd.nnsign.shard.v1"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
# image-spec 1.1's empty descriptor: the two bytes "{}", inlined as `data` as oras-go does.
EMPTY_CONFIG = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
    "data": "e30=",
}


def client(args):
    # "basic" sends the credentials after the registry's 401; the default "token" backend
    # would look for a bearer-token service that an htpasswd registry does not have.
    registry = oras.provider.Registry(
        hostname=args.registry, insecure=args.insecure, auth_backend="basic"
    )
    if args.user is not None:
        registry.auth.set_basic_auth(args.user, args.password or "")
    else:
        registry.auth.authenticate_request = refuse_challenge
    return registry


def refuse_challenge(response, headers, refresh=False):
    # The SDK retries any other error for two minutes before it gives up.
    raise oras.auth.AuthenticationException(
        f"{response.url}: the registry wants credentials (--user, --password)"
    )


def check(response, what):
    if response.status_code not in (200, 201, 202):
        sys.exit(f"oras_interop: {what}: HTTP {response.status_code} {response.text[:500]}")


def split_file(spec):
    path, sep, media_type = spec.rpartition(":")
    if sep:
        return path, media_type
    return spec, ARTIFACT_LAYER if spec.endswith(".nns") else SHARD_LAYER


def push(args):
    registry = client(args)
    container = registry.get_container(args.ref)
    layers = []
    for spec in args.file:
        path, media_type = split_file(spec)
        layer = oras.oci.NewLayer(path, media_type=media_type)
        layer["annotations"] = {TITLE: os.path.basename(path)}
        check(registry.upload_blob(path, container, layer), f"upload {path}")
        layers.append(layer)
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        with open(config, "wb") as f:
            f.write(b"{}")
        check(registry.upload_blob(config, container, dict(EMPTY_CONFIG)), "upload config")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": args.artifact_type,
        "config": EMPTY_CONFIG,
        "layers": layers,
    }
    response = registry.upload_manifest(manifest, container)
    check(response, "upload manifest")
    print(response.headers["Docker-Content-Digest"])


def pull(args):
    registry = client(args)
    container = registry.get_container(args.ref)
    manifest = registry.get_manifest(container, allowed_media_type=[MANIFEST])
    os.makedirs(args.out, exist_ok=True)
    pulled = []
    for layer in manifest["layers"]:
        title = (layer.get("annotations") or {}).get(TITLE)
        if not title:
            sys.exit(f"oras_interop: layer {layer['digest']} has no {TITLE}")
        # Raises on a title that would land outside the folder (`../x`, `/etc/x`).
        out = oras.utils.sanitize_path(args.out, os.path.join(args.out, title))
        registry.download_blob(container, layer["digest"], out)
        with open(out, "rb") as f:
            data = f.read()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if len(data) != layer["size"] or digest != layer["digest"]:
            sys.exit(
                f"oras_interop: {title}: got {len(data)} bytes {digest}, "
                f"manifest says {layer['size']} bytes {layer['digest']}"
            )
        pulled.append(
            {"title": title, "mediaType": layer["mediaType"], "digest": digest, "size": len(data)}
        )
    print(json.dumps(pulled))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = ap.add_subparsers(dest="command", required=True)
    for name in ("push", "pull"):
        p = commands.add_parser(name)
        p.add_argument("--registry", required=True, help="HOST:PORT")
        p.add_argument("--ref", required=True, help="REPO:TAG")
        p.add_argument("--insecure", action="store_true", help="plain HTTP")
        p.add_argument("--user")
        p.add_argument("--password")
        if name == "push":
            p.add_argument("--artifact-type", default=ARTIFACT_TYPE)
            p.add_argument("--file", action="append", required=True, help="PATH[:MEDIATYPE]")
        else:
            p.add_argument("--out", required=True, help="folder for the pulled files")
    args = ap.parse_args()
    push(args) if args.command == "push" else pull(args)


if __name__ == "__main__":
    main()
