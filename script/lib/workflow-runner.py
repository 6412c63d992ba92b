#!/usr/bin/env python3
"""Runs one job of a GitHub Actions workflow on this machine, step by step (docs/releasing.md#dry-runs).

    workflow-runner.py WORKFLOW.yml --job JOB --workspace DIR --repository OWNER/NAME
        [--event push|workflow_dispatch] [--ref refs/tags/V] [--sha SHA]
        [--input K=V] [--secret K=V|K=@FILE] [--var K=V] [--matrix K=V]
        [--replace 'STEP NAME=COMMAND'] [--log FILE]

It reads the YAML with PyYAML, then for each step of the job, in order:
  * evaluates `if:` (success(), always(), failure(), ==, !=, &&, ||, !, contexts);
  * `uses:` steps must be pinned to a full commit; actions/checkout is the workspace itself
    (the caller put the checkout there), any other action fails the run (the dry run cannot
    fake it honestly);
  * `run:` steps: expands ${{ }} in `env:` and in the script as GitHub does (textually, before
    the shell sees it), and runs `bash --noprofile --norc -eo pipefail` in the workspace with
    GITHUB_* / RUNNER_TEMP set and fresh GITHUB_OUTPUT, GITHUB_ENV, GITHUB_PATH and
    GITHUB_STEP_SUMMARY files, which it reads back afterwards (name=value and name<<EOF forms);
  * `--replace 'NAME=COMMAND'` runs COMMAND instead of the step called NAME and says so (the dry
    run uses it only where this machine cannot do what the step does, such as building Flynn).

A matrix job runs once per combination that every --matrix K=V selects; the others are listed as
not run. Prints `ok - ...` / `not ok - ...` per step; exits 1 when a step failed (the steps after a
failure run only when their `if:` says so, as on GitHub), 2 on a usage or workflow error.
"""

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("workflow-runner: PyYAML is required (script/setup-tools installs python3-yaml)")


class WorkflowError(Exception):
    pass


# ---------------------------------------------------------------- expressions

TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>\|\||&&|==|!=|<=|>=|<|>|!|\(|\)|,|\[|\]|\.|\*)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_-]*))"
)


def tokenize(src):
    pos, out = 0, []
    src = src.strip()
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise WorkflowError(f"cannot parse expression at: {src[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
    return out


def truthy(v):
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        return v != ""
    return True


def to_str(v):
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def loose_eq(a, b):
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return to_str(a) == to_str(b) if type(a) is not type(b) else a == b


class Parser:
    def __init__(self, tokens, ctx, funcs):
        self.t, self.i, self.ctx, self.funcs = tokens, 0, ctx, funcs

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, val=None):
        tok = self.peek()
        if tok[0] is None or (val is not None and tok[1] != val):
            raise WorkflowError(f"expected {val!r} in expression, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        v = self.or_()
        if self.i != len(self.t):
            raise WorkflowError(f"unexpected {self.peek()[1]!r} in expression")
        return v

    def or_(self):
        v = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            r = self.and_()
            v = v if truthy(v) else r
        return v

    def and_(self):
        v = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            r = self.cmp()
            v = r if truthy(v) else v
        return v

    def cmp(self):
        v = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("==", "!="):
            op = self.take()[1]
            r = self.unary()
            v = loose_eq(v, r) if op == "==" else not loose_eq(v, r)
        return v

    def unary(self):
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix(self.primary())

    def primary(self):
        kind, val = self.take()
        if kind == "str":
            return val[1:-1].replace("''", "'")
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "op" and val == "(":
            v = self.or_()
            self.take(")")
            return v
        if kind == "id":
            if val in ("true", "false"):
                return val == "true"
            if val == "null":
                return None
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.or_())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                fn = self.funcs.get(val.lower())
                if fn is None:
                    raise WorkflowError(f"unsupported function {val}() in expression")
                return fn(*args)
            if val not in self.ctx:
                raise WorkflowError(f"unknown context {val!r} in expression")
            return self.ctx[val]
        raise WorkflowError(f"unexpected {val!r} in expression")

    def postfix(self, v):
        while True:
            if self.peek() == ("op", "."):
                self.take()
                key = self.take()[1]
                v = v.get(key) if isinstance(v, dict) else None
            elif self.peek() == ("op", "["):
                self.take()
                key = self.or_()
                self.take("]")
                v = v.get(to_str(key)) if isinstance(v, dict) else None
            else:
                return v


def fmt(f, *args):
    return re.sub(r"\{(\d+)\}", lambda m: to_str(args[int(m.group(1))]), f)


def evaluate(expr, ctx, status):
    funcs = {
        "success": lambda: status["ok"],
        "failure": lambda: not status["ok"],
        "always": lambda: True,
        "cancelled": lambda: False,
        "contains": lambda a, b: (to_str(b).lower() in to_str(a).lower()) if not isinstance(a, list)
        else any(loose_eq(x, b) for x in a),
        "startswith": lambda a, b: to_str(a).lower().startswith(to_str(b).lower()),
        "endswith": lambda a, b: to_str(a).lower().endswith(to_str(b).lower()),
        "format": fmt,
        "tojson": lambda a: json.dumps(a, indent=2),
        "fromjson": lambda a: json.loads(a),
    }
    return Parser(tokenize(expr), ctx, funcs).parse()


EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def expand(text, ctx, status):
    if not isinstance(text, str):
        return to_str(text)
    return EXPR.sub(lambda m: to_str(evaluate(m.group(1), ctx, status)), text)


def condition(cond, ctx, status):
    if cond is None:
        return status["ok"]
    if isinstance(cond, bool):
        return cond
    text = str(cond).strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    if m:
        text = m.group(1)
    # GitHub adds success() unless the condition calls a status function itself.
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text):
        text = f"success() && ({text})"
    return truthy(evaluate(text, ctx, status))


# ---------------------------------------------------------------- files written by steps


def read_kv_file(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        m = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if m:
            name, delim, val = m.group(1), m.group(2), []
            while i < len(lines) and lines[i] != delim:
                val.append(lines[i])
                i += 1
            if i >= len(lines):
                raise WorkflowError(f"{path}: no closing delimiter {delim!r} for {name}")
            i += 1
            out[name] = "\n".join(val)
        elif "=" in line:
            name, val = line.split("=", 1)
            out[name] = val
        else:
            raise WorkflowError(f"{path}: invalid line {line!r} (want NAME=VALUE or NAME<<DELIM)")
    return out


# ---------------------------------------------------------------- the run


def kv(pairs, what):
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise WorkflowError(f"{what} {p!r}: want KEY=VALUE")
        k, v = p.split("=", 1)
        if what == "--secret" and v.startswith("@"):
            with open(v[1:], encoding="utf-8") as f:
                v = f.read()
        out[k] = v
    return out


def matrix_combinations(strategy):
    matrix = (strategy or {}).get("matrix")
    if not matrix:
        return [{}]
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos = [dict(zip(axes, vals)) for vals in itertools.product(*axes.values())] if axes else []
    for ex in matrix.get("exclude") or []:
        combos = [c for c in combos if not all(c.get(k) == v for k, v in ex.items())]
    for inc in matrix.get("include") or []:
        matched = False
        for c in combos:
            if all(c.get(k) == v for k, v in inc.items() if k in axes):
                c.update(inc)
                matched = True
        if not matched:
            combos.append(dict(inc))
    return combos


PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow")
    ap.add_argument("--job", required=True)
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--repository", required=True)
    ap.add_argument("--event", default="push")
    ap.add_argument("--ref", default="refs/heads/main")
    ap.add_argument("--sha", default="0" * 40)
    ap.add_argument("--input", action="append")
    ap.add_argument("--secret", action="append")
    ap.add_argument("--var", action="append")
    ap.add_argument("--matrix", action="append")
    ap.add_argument("--replace", action="append")
    ap.add_argument("--log", help="append one JSON line per step to this file")
    a = ap.parse_args()

    try:
        with open(a.workflow, encoding="utf-8") as f:
            wf = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise WorkflowError(f"cannot read {a.workflow}: {e}")
    # PyYAML reads the key `on` as True (YAML 1.1).
    triggers = wf.get("on", wf.get(True))
    events = [triggers] if isinstance(triggers, str) else list(triggers or [])
    if a.event not in events:
        raise WorkflowError(f"{a.workflow} does not run on {a.event} (it runs on {', '.join(map(str, events))})")
    jobs = wf.get("jobs") or {}
    if a.job not in jobs:
        raise WorkflowError(f"{a.workflow} has no job {a.job!r} (jobs: {', '.join(jobs)})")
    job = jobs[a.job]
    if job.get("needs"):
        raise WorkflowError(f"job {a.job} needs {job['needs']}: run those jobs first is not supported")

    # Everything that would stop the run is checked before any step runs.
    for n, step in enumerate(job.get("steps") or [], 1):
        name = step.get("name") or step.get("uses") or f"step {n}"
        if "uses" in step:
            uses = step["uses"]
            if not PINNED.match(str(uses)):
                raise WorkflowError(f"{a.workflow}: step {name}: {uses} is not pinned to a full commit sha (owner/repo@<40 hex>)")
            if uses.split("@")[0] != "actions/checkout" or (step.get("with") or {}).get("repository"):
                raise WorkflowError(f"{a.workflow}: step {name}: action {uses} cannot run here; replace it with a run: step")
        elif "run" not in step:
            raise WorkflowError(f"{a.workflow}: step {name} has neither run: nor uses:")
        shell = step.get("shell") or "bash"
        if shell != "bash":
            raise WorkflowError(f"{a.workflow}: step {name}: shell {shell} is not supported (bash only)")

    replace = kv(a.replace, "--replace")
    names = {s.get("name") for s in job.get("steps", [])}
    for n in replace:
        if n not in names:
            raise WorkflowError(f"--replace names no step of {a.job}: {n!r}")
    select = kv(a.matrix, "--matrix")

    ws = os.path.abspath(a.workspace)
    ref = a.ref
    ref_name = ref.split("/", 2)[2] if ref.count("/") >= 2 else ref
    inputs = kv(a.input, "--input")
    if a.event == "workflow_dispatch":
        for k, spec in ((triggers.get("workflow_dispatch") or {}).get("inputs") or {}).items():
            if k not in inputs:
                if spec.get("required") and "default" not in spec:
                    raise WorkflowError(f"workflow_dispatch input {k} is required: pass --input {k}=VALUE")
                inputs[k] = to_str(spec.get("default", ""))
    owner = a.repository.split("/")[0]
    github = {
        "repository": a.repository, "repository_owner": owner, "ref": ref, "ref_name": ref_name,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch", "sha": a.sha,
        "workspace": ws, "event_name": a.event, "token": "dry-run-token", "server_url": "https://github.com",
        "api_url": "https://api.github.com", "run_id": "1", "run_number": "1", "run_attempt": "1",
        "actor": "dry-run", "job": a.job, "event": {"inputs": inputs} if a.event == "workflow_dispatch" else {},
    }
    secrets = kv(a.secret, "--secret")
    secrets.setdefault("GITHUB_TOKEN", github["token"])

    combos = matrix_combinations(job.get("strategy"))
    chosen = [c for c in combos if all(to_str(c.get(k)) == v for k, v in select.items())]
    for c in combos:
        if c not in chosen:
            print(f"# matrix {json.dumps(c, sort_keys=True)}: not run here (selected {json.dumps(select)})")
    if not chosen:
        raise WorkflowError(f"--matrix {select} selects no combination of {combos}")

    failed = False
    for combo in chosen:
        failed |= not run_job(a, wf, job, combo, github, inputs, secrets, kv(a.var, "--var"), replace, ws)
    return 1 if failed else 0


def run_job(a, wf, job, matrix, github, inputs, secrets, variables, replace, ws):
    tmp = tempfile.mkdtemp(prefix="runner-temp.")
    runner = {"temp": tmp, "os": "Linux", "arch": "X64", "name": "workflow-runner"}
    steps_ctx, status = {}, {"ok": True}
    env = dict(os.environ)
    env.update({
        "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": ws, "GITHUB_REPOSITORY": github["repository"],
        "GITHUB_REPOSITORY_OWNER": github["repository_owner"], "GITHUB_REF": github["ref"],
        "GITHUB_REF_NAME": github["ref_name"], "GITHUB_REF_TYPE": github["ref_type"], "GITHUB_SHA": github["sha"],
        "GITHUB_EVENT_NAME": a.event, "GITHUB_SERVER_URL": github["server_url"], "GITHUB_API_URL": github["api_url"],
        "GITHUB_RUN_ID": "1", "GITHUB_JOB": a.job, "GITHUB_ACTOR": "dry-run", "RUNNER_TEMP": tmp,
        "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
    })
    added_env = {}  # from GITHUB_ENV
    added_path = []  # from GITHUB_PATH

    def ctx(step_env=None):
        # As on GitHub: the env context is the workflow's, job's and step's env: (and what steps
        # wrote to GITHUB_ENV), not the runner process's environment.
        e = dict(added_env)
        e.update(step_env or {})
        return {"github": github, "inputs": inputs, "secrets": secrets, "vars": variables, "env": e,
                "steps": steps_ctx, "matrix": matrix, "runner": runner, "job": {"status": "success" if status["ok"] else "failure"},
                "strategy": {}}

    def expand_env(block, base):
        out = {}
        for k, v in (block or {}).items():
            out[k] = expand(v, ctx({**base, **out}), status)
        return out

    label = f" {json.dumps(matrix, sort_keys=True)}" if matrix else ""
    print(f"# job {a.job}{label}: runs-on {job.get('runs-on')!r}; run here instead, in {ws}")
    wf_env = expand_env(wf.get("env"), {})
    job_env = expand_env(job.get("env"), wf_env)
    defaults = ((job.get("defaults") or wf.get("defaults") or {}).get("run") or {})
    for n, step in enumerate(job.get("steps") or [], 1):
        name = step.get("name") or step.get("uses") or f"step {n}"
        base = {**wf_env, **job_env}
        record = {"n": n, "name": name}
        if not condition(step.get("if"), ctx(base), status):
            print(f"ok - step {n}: {name} # SKIP its if: is false")
            record["result"] = "skipped"
            log(a.log, record)
            if step.get("id"):
                steps_ctx[step["id"]] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            continue
        if "uses" in step:
            uses = step["uses"]
            if not PINNED.match(uses):
                raise WorkflowError(f"step {name}: {uses} is not pinned to a full commit sha")
            if uses.split("@")[0] == "actions/checkout" and not (step.get("with") or {}).get("repository"):
                print(f"ok - step {n}: {name} # the workspace is the checkout")
                record["result"] = "checkout"
                log(a.log, record)
                continue
            raise WorkflowError(f"step {name}: action {uses} cannot run here; replace it with a run: step")
        step_env = expand_env(step.get("env"), base)
        full_env = {**base, **step_env}
        if name in replace:
            script = replace[name]
            print(f"# step {n}: {name}: REPLACED for this dry run by: {script}")
            record["replaced"] = script
        else:
            script = expand(step["run"], ctx(full_env), status)
        files = {}
        for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"):
            fd, files[k] = tempfile.mkstemp(prefix=k.lower() + ".", dir=tmp)
            os.close(fd)
        script_file = os.path.join(tmp, f"step-{n}.sh")
        with open(script_file, "w", encoding="utf-8") as f:
            f.write(script)
        penv = dict(env)
        penv.update(added_env)
        penv.update({k: to_str(v) for k, v in full_env.items()})
        penv.update(files)
        if added_path:
            penv["PATH"] = ":".join(reversed(added_path)) + ":" + penv.get("PATH", "")
        cwd = os.path.join(ws, step.get("working-directory") or defaults.get("working-directory") or "")
        shell = step.get("shell") or defaults.get("shell") or "bash"
        if shell != "bash":
            raise WorkflowError(f"step {name}: shell {shell} is not supported (bash only)")
        sys.stdout.flush()
        rc = subprocess.call(["bash", "--noprofile", "--norc", "-eo", "pipefail", script_file], cwd=cwd, env=penv)
        outputs = read_kv_file(files["GITHUB_OUTPUT"])
        if rc == 0:
            added_env.update(read_kv_file(files["GITHUB_ENV"]))
            with open(files["GITHUB_PATH"], encoding="utf-8") as f:
                added_path.extend(p for p in f.read().splitlines() if p)
        outcome = "success" if rc == 0 else "failure"
        if step.get("id"):
            steps_ctx[step["id"]] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}
        record.update({"result": outcome, "rc": rc, "outputs": outputs})
        log(a.log, record)
        if rc == 0:
            print(f"ok - step {n}: {name}")
        else:
            print(f"not ok - step {n}: {name} (exit {rc})")
            if not step.get("continue-on-error"):
                status["ok"] = False
    shutil.rmtree(tmp, ignore_errors=True)
    return status["ok"]


def log(path, record):
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WorkflowError as e:
        print(f"workflow-runner: {e}", file=sys.stderr)
        sys.exit(2)
