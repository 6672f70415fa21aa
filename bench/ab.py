#!/usr/bin/env python3
"""A/B of two builds of a droplet on one release host: alternating wrk rounds,
host CPU (utime+stime from /proc) per request for each, and the median of the
per-round ratios. Needs `wrk` (`apt-get install wrk`) and a release host.

    bench/ab.py target/release/droplet OLD.wasm NEW.wasm MANIFEST|'' PATH [ROUNDS]

Both builds are served as droplets `old` and `new` (with MANIFEST when given);
each gets three `POST /todos` with a `todo:write` token first (a todo build
then has items to read; other droplets ignore them); then PATH is measured.
Work files go to /tmp/ab/run."""
import json, os, shutil, subprocess, sys, time, urllib.request

HOST = sys.argv[1]            # the droplet binary
OLD, NEW = sys.argv[2], sys.argv[3]   # two .wasm files
MANIFEST = sys.argv[4]        # manifest text file ('' for none)
PATH = sys.argv[5]            # request path inside the droplet
ROUNDS = int(sys.argv[6]) if len(sys.argv) > 6 else 5
SECRET = "ab-secret-ab-secret-ab-secret-ab-secret"
work = "/tmp/ab/run"
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work + "/droplets")
for name, wasm in (("old", OLD), ("new", NEW)):
    shutil.copy(wasm, f"{work}/droplets/{name}.wasm")
    if MANIFEST:
        shutil.copy(MANIFEST, f"{work}/droplets/{name}.toml")
env = dict(os.environ, JWT_SECRET=SECRET, DROPLET_NO_DOTENV="1")
proc = subprocess.Popen([HOST, "serve", "--listen", "127.0.0.1:18111", "--droplets", f"{work}/droplets",
                         "--data", f"{work}/data", "--access-log", "off"], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:18111"
for _ in range(300):
    try:
        h = json.load(urllib.request.urlopen(base + "/health"))
        if h.get("status") != "starting":
            break
    except Exception:
        pass
    time.sleep(0.2)
token = subprocess.run([HOST, "token", "--scope", "todo:write", "--jwt-secret", SECRET],
                       capture_output=True, text=True, env=env).stdout.strip().split()[-1]
for name in ("old", "new"):
    for i in range(3):
        req = urllib.request.Request(f"{base}/{name}/todos", data=b'{"title": "bench item"}',
                                     headers={"authorization": f"Bearer {token}",
                                              "content-type": "application/json"}, method="POST")
        try:
            urllib.request.urlopen(req).read()
        except Exception as err:
            pass
    print(name, urllib.request.urlopen(f"{base}/{name}{PATH}").read()[:80])

def cpu():
    f = open(f"/proc/{proc.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

results = {"old": [], "new": []}
for r in range(ROUNDS):
    for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
        before = cpu()
        out = subprocess.run(["wrk", "-t1", "-c8", "-d4s", f"{base}/{name}{PATH}"],
                             capture_output=True, text=True).stdout
        used = cpu() - before
        reqs = int([l for l in out.splitlines() if "requests in" in l][0].split()[0])
        non2xx = [l for l in out.splitlines() if "Non-2xx" in l]
        results[name].append((used * 1e6 / reqs, reqs / 4, non2xx))
proc.terminate()
for name in ("old", "new"):
    us = sorted(x[0] for x in results[name])
    print(name, "µs/req median", round(us[len(us)//2], 1), "all", [round(x, 1) for x in us],
          "req/s", [round(x[1]) for x in results[name]], [x[2] for x in results[name] if x[2]])
ratios = sorted(n[0] / o[0] for o, n in zip(results["old"], results["new"]))
print("new/old CPU per request: median", round(ratios[len(ratios)//2], 3), "range", round(ratios[0], 3), "-", round(ratios[-1], 3))
