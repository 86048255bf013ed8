"""Offline checks of mapfleet's deployment files (run by deploy/validate.sh, in its venv).

Arguments: --kubernetes-version V, then the built overlays (one multi-document YAML each).

1. Every resource of every overlay validates against the Kubernetes schemas of version V
   (kubernetes-validate, strict: unknown fields are errors); KEDA's kinds validate against
   the openAPIV3Schema of KEDA's CRDs vendored in k8s/vendor/keda/.
2. The fleet's own rules, which schemas cannot express: every container has requests and
   limits, probes, a non-root user and a read-only root; a worker's termination grace is
   longer than its drain (MAPFLEET_SHUTDOWN_GRACE_SECS); disruption budgets and autoscalers
   point at Deployments that exist; the autoscalers watch `<prefix>.steps.default`; no
   password in a URL, an environment value or an argument, and every password file
   (MAPFLEET_*_PASSWORD_FILE) on a mounted Secret.
3. compose.yaml: Redis with AOF everysec, RabbitMQ with the management and Prometheus
   plugins, workers that can be scaled (no container name, no host port), read-only roots,
   a stop grace longer than the worker's drain, every mounted file present; the fleet's
   URLs without a password, its password files from declared Compose secrets.
4. Containerfile: the coordinator and worker stages, non-root, health checks, every COPY
   source present.

Each problem is printed with the file and resource it concerns; the exit status is 1 if any.
"""

import argparse
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def crd_schemas():
    """kind -> openAPIV3Schema of KEDA's vendored CRDs (apiVersion keda.sh/<served version>)."""
    out = {}
    vendor = os.path.join(HERE, "k8s", "vendor", "keda")
    for name in sorted(os.listdir(vendor)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(vendor, name)) as f:
            crd = yaml.safe_load(f)
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                key = (f"{group}/{version['name']}", crd["spec"]["names"]["kind"])
                out[key] = version["schema"]["openAPIV3Schema"]
    return out


def env_of(container, configmaps):
    """A container's environment: its envFrom ConfigMaps, then its env (later wins)."""
    env = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(configmaps.get(ref["name"], {}))
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
    return env


PASSWORD_FILES = ("MAPFLEET_AMQP_PASSWORD_FILE", "MAPFLEET_REDIS_PASSWORD_FILE")


def password_in_url(url):
    """Whether a URL carries a password (`scheme://user:password@host`)."""
    return re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", url or "") is not None


def check_credentials(where, env, args):
    """The fleet's rules for secrets: URLs with a user but no password, no password as an
    environment value or in the arguments (`ps`, `kubectl describe` show those), and both
    password files given. Returns the password files' paths."""
    for name in ("MAPFLEET_AMQP_URL", "MAPFLEET_REDIS_URL"):
        if password_in_url(env.get(name)):
            problem(where, f"{name} carries a password: give it in a file ({name[:-4]}_PASSWORD_FILE)")
    for name in ("MAPFLEET_AMQP_PASSWORD", "MAPFLEET_REDIS_PASSWORD"):
        if env.get(name):
            problem(where, f"{name} is a literal value: mount a password file instead")
    for arg in args or []:
        if password_in_url(str(arg)) or "password" in str(arg).lower() and "-file" not in str(arg):
            problem(where, f"argument {arg!r} looks like a password on the command line")
    files = [env.get(name) for name in PASSWORD_FILES]
    for name, path in zip(PASSWORD_FILES, files):
        if not path:
            problem(where, f"no {name}: the process would log in without a password")
    return [f for f in files if f]


def check_overlay(path, version, crds):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    overlay = os.path.basename(path)[: -len(".yaml")]
    by_kind = {}
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        where = f"{overlay}: {kind}/{name}"
        by_kind.setdefault(kind, {})[name] = d
        schema = crds.get((d.get("apiVersion"), kind))
        try:
            if schema is not None:
                jsonschema.validate(d, schema)
            else:
                kubernetes_validate.validate(d, version, strict=True)
        except jsonschema.ValidationError as e:
            path_ = "/".join(str(p) for p in e.absolute_path)
            problem(where, f"{e.message} (at {path_ or 'the top'})")
        except kubernetes_validate.SchemaNotFoundError:
            problem(where, f"no schema for {d.get('apiVersion')} {kind} in Kubernetes {version}")

    configmaps = {n: c.get("data", {}) for n, c in by_kind.get("ConfigMap", {}).items()}
    deployments = by_kind.get("Deployment", {})
    for want in ("mapfleet-coordinator", "mapfleet-worker"):
        if want not in deployments:
            problem(overlay, f"no Deployment {want}")
    for name, dep in deployments.items():
        where = f"{overlay}: Deployment/{name}"
        pod = dep["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problem(where, "the pod does not set runAsNonRoot")
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        problem(cw, f"no {part}.{r}")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe not in c:
                    problem(cw, f"no {probe}")
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                problem(cw, "root file system not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation not false")
            env = env_of(c, configmaps)
            if "MAPFLEET_METRICS_ADDR" not in env:
                problem(cw, "no MAPFLEET_METRICS_ADDR: nothing to probe or scrape")
            secret_volumes = {
                v["name"] for v in pod.get("volumes", []) if "secret" in v
            }
            mounts = [
                m["mountPath"].rstrip("/") + "/"
                for m in c.get("volumeMounts", [])
                if m["name"] in secret_volumes
            ]
            for f in check_credentials(cw, env, c.get("args", []) + c.get("command", [])):
                if not any(f.startswith(m) for m in mounts):
                    problem(cw, f"password file {f} is on no mounted Secret")
            if name == "mapfleet-worker":
                drain = int(env.get("MAPFLEET_SHUTDOWN_GRACE_SECS", "30"))
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace < drain + 10:
                    problem(
                        where,
                        f"terminationGracePeriodSeconds {grace} leaves less than 10 s after the "
                        f"worker's {drain} s drain: Kubernetes would SIGKILL it mid-step",
                    )
    prefix = next(iter(configmaps.values()), {}).get("MAPFLEET_PREFIX", "mapfleet")
    steps_queue = f"{prefix}.steps.default"
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(
            all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
            for d in deployments.values()
        ):
            problem(f"{overlay}: PodDisruptionBudget/{name}", f"selects no Deployment ({sel})")
    scalers = 0
    for name, so in by_kind.get("ScaledObject", {}).items():
        scalers += 1
        where = f"{overlay}: ScaledObject/{name}"
        if so["spec"]["scaleTargetRef"]["name"] not in deployments:
            problem(where, "scales no Deployment of the overlay")
        if so["spec"].get("minReplicaCount", 0) < 1:
            problem(where, "minReplicaCount 0: steps fail as unserved while a worker starts")
        auths = by_kind.get("TriggerAuthentication", {})
        for t in so["spec"]["triggers"]:
            if t["type"] == "rabbitmq" and t["metadata"].get("queueName") != steps_queue:
                problem(where, f"watches {t['metadata'].get('queueName')}, not {steps_queue}")
            ref = t.get("authenticationRef", {}).get("name")
            if ref and ref not in auths:
                problem(where, f"authenticationRef {ref} is not in the overlay")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        scalers += 1
        where = f"{overlay}: HorizontalPodAutoscaler/{name}"
        if hpa["spec"]["scaleTargetRef"]["name"] not in deployments:
            problem(where, "scales no Deployment of the overlay")
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "External":
                metric = m["external"]["metric"]
                if metric["name"] != "mapfleet_queue_messages_ready":
                    problem(where, f"scales on {metric['name']}, not the steps backlog")
                queue = metric.get("selector", {}).get("matchLabels", {}).get("queue")
                if queue != steps_queue:
                    problem(where, f"watches queue {queue}, not {steps_queue}")
    if scalers == 0:
        problem(overlay, "no autoscaler (ScaledObject or HorizontalPodAutoscaler)")
    return len(docs)


def check_compose():
    path = os.path.join(HERE, "compose.yaml")
    with open(path) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    for want in ("rabbitmq", "redis", "coordinator", "worker", "prometheus", "grafana"):
        if want not in services:
            problem("compose.yaml", f"no service {want}")
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                if not os.path.exists(os.path.join(HERE, src)):
                    problem(f"compose.yaml: {name}", f"mounts {src}, which does not exist")
            elif src not in compose.get("volumes", {}):
                problem(f"compose.yaml: {name}", f"named volume {src} not declared")
        for dep in svc.get("depends_on", []):
            if dep not in services:
                problem(f"compose.yaml: {name}", f"depends on unknown service {dep}")
    redis_conf = open(os.path.join(HERE, "redis", "redis.conf")).read()
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        if not re.search(rf"^{line}$", redis_conf, re.M):
            problem("redis/redis.conf", f"missing `{line}`")
    plugins = open(os.path.join(HERE, "rabbitmq", "enabled_plugins")).read()
    for p in ("rabbitmq_management", "rabbitmq_prometheus"):
        if p not in plugins:
            problem("rabbitmq/enabled_plugins", f"{p} not enabled")
    for name in ("coordinator", "worker"):
        svc = services.get(name, {})
        where = f"compose.yaml: {name}"
        if "container_name" in svc:
            problem(where, "container_name set: `--scale` cannot run two")
        if svc.get("ports"):
            problem(where, "publishes host ports: `--scale` would collide")
        if not svc.get("read_only"):
            problem(where, "root file system not read-only")
        if "MAPFLEET_METRICS_ADDR" not in svc.get("environment", {}):
            problem(where, "no MAPFLEET_METRICS_ADDR: Prometheus scrapes nothing")
        command = svc.get("command", [])
        files = check_credentials(
            where, svc.get("environment", {}), command if isinstance(command, list) else [command]
        )
        mounted = {
            "/run/secrets/" + (s if isinstance(s, str) else s.get("target", s["source"]))
            for s in svc.get("secrets", [])
        }
        for f in files:
            if f not in mounted:
                problem(where, f"password file {f} is no secret of the service")
    for name, secret in compose.get("secrets", {}).items():
        src = secret.get("file")
        if src and not os.path.exists(os.path.join(HERE, src)):
            problem(f"compose.yaml: secret {name}", f"file {src} does not exist")
    for name, svc in services.items():
        for s in svc.get("secrets", []):
            ref = s if isinstance(s, str) else s["source"]
            if ref not in compose.get("secrets", {}):
                problem(f"compose.yaml: {name}", f"secret {ref} is not declared")
    worker = services.get("worker", {})
    drain = int(worker.get("environment", {}).get("MAPFLEET_SHUTDOWN_GRACE_SECS", "30"))
    grace = worker.get("stop_grace_period", "10s")
    secs = int(grace.rstrip("s")) if re.fullmatch(r"\d+s", grace) else 0
    if secs < drain + 10:
        problem("compose.yaml: worker", f"stop_grace_period {grace} is not above the {drain} s drain")


def check_containerfile():
    path = os.path.join(HERE, "Containerfile")
    text = open(path).read()
    stages = re.findall(r"^FROM \S+ AS (\S+)", text, re.M)
    for want in ("build", "models", "coordinator", "worker"):
        if want not in stages:
            problem("Containerfile", f"no stage {want}")
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        if src != "." and not os.path.exists(os.path.join(REPO, src)):
            problem("Containerfile", f"COPY {src}: no such file in the repository")
    parts = re.split(r"^FROM ", text, flags=re.M)
    for part in parts:
        head = part.split("\n", 1)[0]
        if head.endswith(" AS coordinator") or head.endswith(" AS worker"):
            stage = head.rsplit(" ", 1)[1]
            users = re.findall(r"^USER (\S+)", part, re.M)
            if not users or users[-1].split(":")[0] in ("0", "root"):
                problem("Containerfile", f"stage {stage} runs as root")
            if "HEALTHCHECK" not in part:
                problem("Containerfile", f"stage {stage} has no HEALTHCHECK")
            if "ENTRYPOINT" not in part:
                problem("Containerfile", f"stage {stage} has no ENTRYPOINT")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("overlays", nargs="+")
    args = ap.parse_args()
    crds = crd_schemas()
    if not crds:
        problem("k8s/vendor/keda", "no CRD schemas")
    total = 0
    for path in args.overlays:
        total += check_overlay(path, args.kubernetes_version, crds)
    check_compose()
    check_containerfile()
    for p in problems:
        print(f"validate: {p}", file=sys.stderr)
    if problems:
        print(f"validate: {len(problems)} problems", file=sys.stderr)
        return 1
    print(
        f"validate: OK: {len(args.overlays)} overlays ({total} resources, Kubernetes "
        f"{args.kubernetes_version}, KEDA CRDs {sorted(k for _, k in crds)}), compose.yaml, Containerfile"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
