"""The course's lessons: ("md", English, Korean) and ("code", source) cells.

scripts/course_notebooks.py writes each lesson as notebooks/en/NAME.ipynb and
notebooks/ko/NAME.ipynb.  Code cells are the same in both languages.
"""

ROOT_NOTE = ("md", """
> **Needs root.** Cells marked *(root)* shape network links or change cgroups on the host. In this lab's
> root mode they just run; on the rootless rung (a JupyterHub or Binder user) the next cell says which
> rung you are on and what that means.
""", """
> **root 권한이 필요합니다.** *(root)* 표시가 붙은 셀은 호스트에서 네트워크 링크의 속도를 조절하거나 cgroup을 바꿉니다.
> 이 랩의 root 모드에서는 그냥 실행되고, rootless 단계(JupyterHub나 Binder 사용자)에서는 바로 아래 셀이
> 지금 어느 단계에서 돌고 있는지, 그게 무슨 뜻인지 알려 줍니다.
""")

WHO = ("code", """
import os
print("this kernel runs as", "root: every cell of this notebook can run" if os.geteuid() == 0
      else f"uid {os.geteuid()} (rootless): run %container doctor to see what this host allows")
""")

FIRST = [
    ("md", """
# 01 · Your first container

A container is a **light package**: your application plus the exact language runtime and libraries it
needs, started as an ordinary process that the Linux kernel gives its own view of the machine.
In this notebook you compare a plain cell (your notebook's own process) with a `%%container` cell
(a new container), look at what an image holds, and watch the steps the kernel takes to start one.
Every figure below is measured now, on your machine.
""", """
# 01 · 첫 번째 컨테이너

컨테이너는 **가벼운 꾸러미**입니다. 애플리케이션과, 그 애플리케이션이 필요로 하는 언어 런타임·라이브러리를
정확히 함께 담아 두고, 리눅스 커널이 "이 기계를 혼자 쓰는 것처럼" 보이게 해 주는 평범한 프로세스로 실행합니다.
이 노트북에서는 보통 셀(노트북 자신의 프로세스)과 `%%container` 셀(새 컨테이너)을 나란히 비교하고,
이미지 안에 무엇이 들어 있는지 살펴본 뒤, 커널이 컨테이너 하나를 띄우기 위해 거치는 단계를 직접 봅니다.
아래의 숫자는 모두 지금 여러분의 기계에서 측정한 값입니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. A plain cell and a container cell

A plain cell runs in the notebook's kernel: it sees the host's name, has some large PID, and sees every
process of the machine.
""", """
## 1. 보통 셀과 컨테이너 셀

보통 셀은 노트북 커널 안에서 실행됩니다. 호스트의 이름을 보고, 큰 PID 번호를 갖고, 기계에 있는 모든
프로세스를 볼 수 있습니다.
"""),
    ("code", """
import os, socket
print("hostname:", socket.gethostname())
print("my PID:", os.getpid())
print("processes I can see:", sum(name.isdigit() for name in os.listdir("/proc")))
"""),
    ("md", """
The same questions in a container. `--hostname lab` names it; inside, the shell is **PID 1** (the first
process of its own PID namespace) and `ps` lists only the container's processes.
""", """
같은 질문을 컨테이너 안에서 해 봅시다. `--hostname lab`으로 이름을 붙였고, 안에서는 셸이 **PID 1**
(자기만의 PID 네임스페이스에서 첫 번째 프로세스)이며, `ps`에는 컨테이너 안의 프로세스만 보입니다.
"""),
    ("code", """
%%container --image busybox --hostname lab
echo "hostname: $(hostname)"
echo "my PID: $$"
echo "processes I can see: $(ls -d /proc/[0-9]* | wc -l)"
ps
"""),
    ("md", """
Its files are its own too: the root directory is the image's, and what a container writes vanishes with
it. The second cell is a new container: the note is gone.
""", """
파일도 컨테이너만의 것입니다. 루트 디렉터리는 이미지의 것이고, 컨테이너가 쓴 내용은 컨테이너와 함께
사라집니다. 두 번째 셀은 새 컨테이너라서 메모가 남아 있지 않습니다.
"""),
    ("code", """
%%container --image busybox
echo hello > /tmp/note && cat /tmp/note
ls /
"""),
    ("code", """
%%container --image busybox
cat /tmp/note 2>&1 || echo "no note: this is a fresh container"
"""),
    ("md", """
## 2. What an image holds: app + runtime + libraries

An image carries the runtime its app needs. The `host` image carries the host's Python; the tiny
`busybox` image carries a shell and small tools, and **no Python at all**: a Python app shipped in it
could not run.
""", """
## 2. 이미지에 담긴 것: 앱 + 런타임 + 라이브러리

이미지에는 앱이 필요로 하는 런타임이 함께 들어 있습니다. `host` 이미지에는 호스트의 파이썬이 들어 있고,
아주 작은 `busybox` 이미지에는 셸과 작은 도구들만 있을 뿐 **파이썬이 전혀 없습니다**. 그래서 파이썬 앱을
busybox 이미지에 담아 보내면 실행할 수 없습니다.
"""),
    ("code", """
%%container --image host
python3 -c 'import sys, ssl; print("python", sys.version.split()[0], "with", ssl.OPENSSL_VERSION)'
"""),
    ("code", """
%%container --image busybox
python3 --version 2>&1 || echo "exit $?: busybox has no python3"
du -sh /bin 2>/dev/null | sed 's/^/busybox tools: /'
"""),
    ("code", "%container images"),
    ("md", """
## 3. The steps that start a container, timed

`--explain` lists what the runtime did for this container (namespaces cloned, cgroup made, root
filesystem mounted, ...) with the time each step took, measured on this start. Compare the total with
the seconds a virtual machine needs to boot.
""", """
## 3. 컨테이너가 시작되는 단계와 걸린 시간

`--explain`은 이 컨테이너를 위해 런타임이 한 일(네임스페이스 복제, cgroup 생성, 루트 파일시스템 마운트 등)을
단계마다 걸린 시간과 함께 보여 줍니다. 방금 실행에서 측정한 값입니다. 전체 시간을 가상 머신이 부팅하는 데
걸리는 몇 초와 비교해 보세요.
"""),
    ("code", """
%%container --image busybox --explain
true
"""),
    ("md", """
## Exercises

1. Start a **detached** busybox container named `first`, with hostname `lab`, that runs `sleep 300`.
   The attempt below forgets something: run it, run the check, read what is missing, fix the attempt and
   run both again.

<details><summary>Hint</summary>

`%%container` takes docker's run flags: `--image`, `--name`, `--hostname`, `--detach`.
Remove the old one first with `%container rm -f first`.
</details>
""", """
## 연습 문제

1. busybox 이미지로 `sleep 300`을 실행하는 **백그라운드(detached)** 컨테이너를 만드세요. 이름은 `first`,
   호스트 이름은 `lab`입니다. 아래 시도에는 빠진 것이 하나 있습니다. 실행하고, 검사 셀을 실행해서 무엇이
   빠졌는지 읽은 다음, 시도를 고쳐서 둘 다 다시 실행해 보세요.

<details><summary>힌트</summary>

`%%container`는 docker run의 옵션을 그대로 받습니다: `--image`, `--name`, `--hostname`, `--detach`.
다시 만들기 전에 `%container rm -f first`로 먼저 지우세요.
</details>
"""),
    ("code", """
%%container --image busybox --name first --detach
sleep 300
"""),
    ("code", """
from containerlab_magic.course import check_container
check_container("first", image="busybox", hostname="lab", running=True)
"""),
    ("md", """
2. Which image can run a Python app, `"host"` or `"busybox"`? Set `answer` and check it.

<details><summary>Hint</summary>

Look at the two cells of section 2: which one printed a Python version?
</details>
""", """
2. 파이썬 앱을 실행할 수 있는 이미지는 `"host"`와 `"busybox"` 중 어느 것일까요? `answer`에 값을 넣고 확인해 보세요.

<details><summary>힌트</summary>

2절의 두 셀을 다시 보세요. 파이썬 버전을 출력한 쪽은 어디였나요?
</details>
"""),
    ("code", """
from containerlab_magic.course import check_value
answer = "host"
check_value(answer, "host", "the image with Python")
"""),
    ("code", "%container rm -f first"),
]

NETWORKS = [
    ("md", """
# 05 · Networks and microservices

Containers share the machine's network at the operating-system level, each with its own network
namespace: its own interfaces, addresses and ports. Here you join containers with a bridge, reach
them by name, publish a port to the host, then run a small **microservice** app (a web front, an API
and a data store) as one stack, break one service and watch the others, and finally slow a link down
and measure it.
""", """
# 05 · 네트워크와 마이크로서비스

컨테이너는 운영체제 수준에서 기계의 네트워크를 함께 쓰지만, 저마다 자기 네트워크 네임스페이스(자기만의
인터페이스, 주소, 포트)를 갖습니다. 이 노트북에서는 브리지로 컨테이너를 서로 잇고, 이름으로 찾아가고,
포트를 호스트에 공개해 본 다음, 작은 **마이크로서비스** 앱(웹 프런트, API, 데이터 저장소)을 하나의 스택으로
띄웁니다. 서비스 하나를 멈춰서 나머지가 어떻게 되는지 보고, 마지막으로 링크 속도를 낮춰 직접 측정합니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. A bridge, and names

`network create` makes a Linux bridge with its own subnet. Each container on it gets a veth pair, an
address, and the names of the other members in its `/etc/hosts`. As root the bridge is on the host; as any
other user it lives in a network namespace of your own (one process of yours holds it), and the containers
on it join that process's user namespace, so the same cells work.
""", """
## 1. 브리지와 이름

`network create`는 자기 서브넷을 가진 리눅스 브리지를 만듭니다. 여기에 붙는 컨테이너마다 veth 한 쌍과
주소가 생기고, 다른 멤버들의 이름이 `/etc/hosts`에 적힙니다. root라면 브리지는 호스트에 있고, 다른
사용자라면 여러분만의 네트워크 네임스페이스(여러분의 프로세스 하나가 붙잡고 있습니다) 안에 있으며, 거기 붙는
컨테이너들은 그 프로세스의 user 네임스페이스에 들어갑니다. 그래서 같은 셀이 그대로 동작합니다.
"""),
    ("code", "%container network create course05"),
    ("code", """
%%container --image busybox --net course05 --name hello-web --detach
mkdir -p /www && echo "hello from the web container" > /www/index.html
httpd -f -p 80 -h /www
"""),
    ("code", """
%%container --image busybox --net course05
cat /etc/hosts
wget -qO- http://hello-web/index.html
"""),
    ("md", """
## 2. Publishing a port

`-p HOST:CONTAINER` makes the container's port reachable from the host (on 127.0.0.1). This plain
cell is the notebook's own process, outside every container.
""", """
## 2. 포트 공개하기

`-p 호스트:컨테이너`를 쓰면 컨테이너의 포트에 호스트(127.0.0.1)에서 접속할 수 있습니다. 아래의 보통 셀은
어떤 컨테이너에도 들어 있지 않은, 노트북 자신의 프로세스입니다.
"""),
    ("code", """
%%container --image busybox --net course05 --name published -p 28585:80 --detach
mkdir -p /www && echo "published on the host" > /www/index.html
httpd -f -p 80 -h /www
"""),
    ("code", """
import time, urllib.request

def fetch(url, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:  # the server may still be starting: poll until the deadline
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

print(fetch("http://127.0.0.1:28585/index.html"))
"""),
    ("md", """
## 3. Three services as one stack

A `%%stack NAME` cell is a compose-style YAML document. The store counts visits, the API asks the store
and answers JSON, and the web front (busybox `httpd` with a CGI script) asks the API. `depends_on`
starts them in order; the web front waits until the API's healthcheck passes. Services find each other
by service name.
""", """
## 3. 서비스 세 개를 하나의 스택으로

`%%stack 이름` 셀의 내용은 compose 형식의 YAML 문서입니다. store는 방문 횟수를 세고, api는 store에 물어
JSON으로 답하며, web 프런트(CGI 스크립트를 쓰는 busybox `httpd`)는 api에 묻습니다. `depends_on` 순서대로
시작되고, web은 api의 healthcheck가 통과할 때까지 기다립니다. 서비스끼리는 서비스 이름으로 서로를 찾습니다.
"""),
    ("code", """
import os
os.makedirs("/tmp/course05-www/cgi-bin", exist_ok=True)
with open("/tmp/course05-www/cgi-bin/visits", "w") as f:
    f.write("#!/bin/sh\\necho 'Content-Type: application/json'\\necho\\nnc api 8000 </dev/null\\n")
os.chmod("/tmp/course05-www/cgi-bin/visits", 0o755)
"""),
    ("code", """
%%stack shop
services:
  store:
    image: busybox
    command: ["sh", "-c", "echo store ready; n=0; while true; do n=$((n+1)); echo $n | nc -l -p 7000; done"]
  api:
    image: busybox
    command: ["sh", "-c", "echo api ready; while true; do echo \\"{\\\\\\"visits\\\\\\": $(nc store 7000 </dev/null)}\\" | nc -l -p 8000; done"]
    depends_on: [store]
    healthcheck:
      test: ["CMD-SHELL", "nc 127.0.0.1 8000 </dev/null | grep -q visits"]
      interval: 200ms
      retries: 25
    mem_limit: 32M
  web:
    image: busybox
    command: httpd -f -p 80 -h /www
    volumes: ["/tmp/course05-www:/www:ro"]
    ports: ["28586:80"]
    depends_on:
      api: {condition: service_healthy}
"""),
    ("code", """
import json

def visits(timeout=5.0):
    # the API (nc) answers one request at a time: one that comes between two answers gets
    # an empty reply, so ask again until the deadline
    deadline = time.monotonic() + timeout
    while True:
        body = fetch("http://127.0.0.1:28586/cgi-bin/visits").strip()
        if body.startswith("{") and any(c.isdigit() for c in body):
            return json.loads(body)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no count from the API after {timeout} s: {body!r}")
        time.sleep(0.1)

first, second = visits(), visits()
print(first, second, "-> the count went up by", second["visits"] - first["visits"])
"""),
    ("md", """
Now kill the data store. The web front and the API keep running (separate processes, separate
containers); only the answers that need the store break. (The API asked the store for its next count
before it died, so one more answer still has a number; the one after has none.)
""", """
이제 데이터 저장소(store)를 강제로 종료해 봅시다. web과 api는 별개의 프로세스, 별개의 컨테이너이므로 계속
실행되고, store가 필요한 답만 깨집니다. (api는 store가 죽기 전에 다음 숫자를 미리 받아 두었기 때문에 한 번은
숫자가 나오고, 그다음부터는 숫자가 비어 있습니다.)
"""),
    ("code", "%container kill shop-store-1"),
    ("code", """
for attempt in range(2):
    try:
        body = fetch("http://127.0.0.1:28586/cgi-bin/visits", timeout=3).strip()
        print(f"answer {attempt + 1}: {body!r}", "(a count)" if any(c.isdigit() for c in body) else "(no count)")
    except OSError as e:
        print("the web front answered, but the request failed:", e)
"""),
    ("code", "%stack ps shop"),
    ("code", "%stack logs shop"),
    ("md", """
## 4. A shaped link, measured *(root)*

`--net-rate` puts a token-bucket filter (tc `tbf`) on the container's link. Download the same 1 MiB file
from a fast and from a slow container and compare the rates, measured here.
""", """
## 4. 속도를 제한한 링크, 직접 측정하기 *(root)*

`--net-rate`는 컨테이너의 링크에 토큰 버킷 필터(tc `tbf`)를 겁니다. 빠른 컨테이너와 느린 컨테이너에서
같은 1 MiB 파일을 내려받아 속도를 비교해 봅시다. 여기서 직접 잰 값입니다.
"""),
    ("code", """
%%container --image busybox --net course05 --name fast -p 28587:80 --detach
mkdir -p /www && head -c 1048576 /dev/zero > /www/blob && httpd -f -p 80 -h /www
"""),
    ("code", """
%%container --image busybox --net course05 --name slow -p 28588:80 --net-rate 4mbit --detach
mkdir -p /www && head -c 1048576 /dev/zero > /www/blob && httpd -f -p 80 -h /www
"""),
    ("code", """
def rate_mbit(port):
    deadline = time.monotonic() + 5
    while True:
        try:
            start = time.perf_counter()
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}/blob", timeout=30).read())
            return size * 8 / (time.perf_counter() - start) / 1e6
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

fast, slow = rate_mbit(28587), rate_mbit(28588)
print(f"fast: {fast:.0f} Mbit/s   slow: {slow:.1f} Mbit/s   (limit 4 Mbit/s)")
print("the shaped link is", "slower" if slow < fast / 2 else "NOT slower", "than the other")
"""),
    ("md", """
## Exercises

1. Bring up a stack named `pair` with two services, `ping` and `pong` (busybox, `sleep 300` each). The
   attempt below has only one of them: run it, check, fix it (take it down first with `%stack down pair`).

<details><summary>Hint</summary>

Each service is a key under `services:` with at least `image:` and `command:`.
</details>
""", """
## 연습 문제

1. 서비스 두 개 `ping`과 `pong`(둘 다 busybox, `sleep 300`)으로 이루어진 `pair`라는 스택을 띄우세요.
   아래 시도에는 하나만 있습니다. 실행하고, 검사하고, 고쳐 보세요(고치기 전에 `%stack down pair`로 내리세요).

<details><summary>힌트</summary>

서비스는 `services:` 아래의 키 하나이고, 적어도 `image:`와 `command:`가 있어야 합니다.
</details>
"""),
    ("code", """
%%stack pair
services:
  ping:
    image: busybox
    command: sleep 300
"""),
    ("code", """
from containerlab_magic.course import check_stack
check_stack("pair", ["ping", "pong"])
"""),
    ("md", """
2. Clean up: everything this notebook made goes.
""", """
2. 정리하기: 이 노트북이 만든 것을 모두 지웁니다.
"""),
    ("code", """
%stack down pair
%stack down shop
%container rm -f hello-web published fast slow
%container network rm course05
import shutil; shutil.rmtree("/tmp/course05-www")
"""),
]

LESSONS = {"01-first-container": FIRST, "05-networks-and-microservices": NETWORKS}

LIMITS = [
    ("md", """
# 03 · Sharing and limits

Containers share one machine's CPU, memory, storage and processes at the operating-system level. The
kernel's **cgroups** decide how much of each a container may take: a memory limit (and what happens past
it), a CPU quota, a cap on the number of processes, a size for what it writes. Every number below is
measured in this run.
""", """
# 03 · 자원 나눠 쓰기와 제한

컨테이너는 한 기계의 CPU, 메모리, 저장 공간, 프로세스를 운영체제 수준에서 함께 씁니다. 컨테이너가 각각을
얼마나 가져갈 수 있는지는 커널의 **cgroup**이 정합니다. 메모리 한도(그리고 한도를 넘으면 벌어지는 일),
CPU 할당량, 프로세스 개수 상한, 쓸 수 있는 저장 공간 크기를 차례로 봅니다. 아래 숫자는 모두 이번 실행에서
잰 값입니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. Memory: a limit, and the OOM kill *(root: cgroups)*

With `--memory 32M` the container's cgroup may hold 32 MiB. A Python process that asks for 100 MiB is
killed by the kernel's out-of-memory killer (signal 9, exit 137); the shell around it survives and
reports it.
""", """
## 1. 메모리: 한도와 OOM 강제 종료 *(root: cgroup)*

`--memory 32M`을 주면 컨테이너의 cgroup은 32 MiB까지만 쓸 수 있습니다. 100 MiB를 달라고 하는 파이썬
프로세스는 커널의 OOM(메모리 부족) 킬러에게 강제 종료되고(시그널 9, 종료 코드 137), 그 바깥의 셸은 살아남아
결과를 알려 줍니다.
"""),
    ("code", """
%%container --image host --memory 32M
python3 -c 'x = bytearray(100 << 20); print("got 100 MiB")'
echo "python3 ended with exit code $?"
"""),
    ("code", """
print(_container.describe())
print("OOM kills in this container:", _container.memory_kills)
"""),
    ("md", """
## 2. CPU: a quota, measured

`--cpus 0.25` lets the container use a quarter of one CPU's time. The same busy loop runs for one second
of wall-clock time with and without the quota; `process_time()` says how much CPU it actually got.
""", """
## 2. CPU: 할당량을 직접 재기

`--cpus 0.25`는 컨테이너가 CPU 하나의 4분의 1만 쓰게 합니다. 같은 바쁜 반복문을 할당량이 있을 때와 없을 때
각각 1초(벽시계 시간) 동안 돌리고, `process_time()`으로 실제로 받은 CPU 시간을 잽니다.
"""),
    ("code", """
%%container --python --out unlimited
import time
start, cpu = time.monotonic(), time.process_time()
while time.monotonic() - start < 1.0:
    pass
unlimited = time.process_time() - cpu
print(f"CPU time in 1 s without a quota: {unlimited:.2f} s")
"""),
    ("code", """
%%container --python --cpus 0.25 --out quarter
import time
start, cpu = time.monotonic(), time.process_time()
while time.monotonic() - start < 1.0:
    pass
quarter = time.process_time() - cpu
print(f"CPU time in 1 s with --cpus 0.25: {quarter:.2f} s")
"""),
    ("code", """
print(f"with --cpus 0.25 the loop got {quarter:.2f} CPU-seconds per second: the quota caps it")
print(f"without a quota it got {unlimited:.2f} (all that the machine's other work left it)")
"""),
    ("md", """
## 3. Processes: a fork bomb, stopped

`--pids-limit 20` caps the number of processes (the cgroup's `pids.max`). A loop that tries to start
50 child processes gets fewer than 20; the kernel refuses the rest (`fork` fails with EAGAIN), and
the machine stays fine.
""", """
## 3. 프로세스: 포크 폭탄 막기

`--pids-limit 20`은 프로세스 개수에 상한을 둡니다(cgroup의 `pids.max`). 자식 프로세스를 50개 띄우려는
반복문은 20개도 채 띄우지 못하고, 나머지는 커널이 거절합니다(`fork`가 EAGAIN으로 실패). 기계 전체는 멀쩡합니다.
"""),
    ("code", """
%%container --python --pids-limit 20
import os, time
children, refused = [], 0
for _ in range(50):
    try:
        pid = os.fork()
    except BlockingIOError:  # EAGAIN: the cgroup's pids.max is reached
        refused += 1
        continue
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    children.append(pid)
print(f"started {len(children)} children; the kernel refused {refused} forks")
print("pids.max =", open("/sys/fs/cgroup/pids/pids.max").read().strip())
for pid in children:
    os.waitpid(pid, 0)
"""),
    ("md", """
## 4. Storage: a size for what it writes

Everything a container writes goes to its own writable layer. `--storage-size 8M` makes that layer 8 MiB:
writing 20 MiB fails with "No space left on device", inside the container only.
""", """
## 4. 저장 공간: 쓸 수 있는 크기

컨테이너가 쓰는 내용은 모두 자기만의 쓰기 계층으로 갑니다. `--storage-size 8M`이면 그 계층이 8 MiB가 되어,
20 MiB를 쓰려고 하면 "No space left on device"로 실패합니다. 컨테이너 안에서만 그렇습니다.
"""),
    ("code", """
%%container --image busybox --storage-size 8M
dd if=/dev/zero of=/tmp/big bs=1M count=20 2>&1 | grep -i -e "no space" -e copied
ls -l /tmp/big | awk '{print "written:", $5, "bytes"}'
"""),
    ("md", """
## 5. Looking at a cgroup, and changing it live *(root: cgroups)*

`%cgroup NAME` shows usage against limits and the cgroup files behind each figure.
`%cgroup NAME memory=128M` changes the limit of a running container.
""", """
## 5. cgroup 들여다보기, 실행 중에 바꾸기 *(root: cgroup)*

`%cgroup 이름`은 사용량과 한도, 그리고 각 숫자를 읽어 온 cgroup 파일을 보여 줍니다.
`%cgroup 이름 memory=128M`은 실행 중인 컨테이너의 한도를 바꿉니다.
"""),
    ("code", """
%%container --image busybox --name limited --memory 64M --cpus 0.5 --detach
sleep 300
"""),
    ("code", "%cgroup limited"),
    ("code", "%cgroup limited memory=128M"),
    ("code", """
from containerlab_magic.course import check_container
check_container("limited", memory="128M", cpus=0.5)
"""),
    ("md", """
## Exercises

1. Start a detached busybox container `capped` running `sleep 300`, with **48 MiB** of memory and at most
   **30 processes**. The attempt below misses one limit: run it, check it, fix it.

<details><summary>Hint</summary>

`--memory 48M --pids-limit 30`. Remove the old one first: `%container rm -f capped`.
</details>
""", """
## 연습 문제

1. `sleep 300`을 실행하는 백그라운드 busybox 컨테이너 `capped`를 만드세요. 메모리는 **48 MiB**, 프로세스는
   **최대 30개**입니다. 아래 시도에는 한도 하나가 빠져 있습니다. 실행하고, 검사하고, 고쳐 보세요.

<details><summary>힌트</summary>

`--memory 48M --pids-limit 30`. 먼저 기존 컨테이너를 지우세요: `%container rm -f capped`.
</details>
"""),
    ("code", """
%%container --image busybox --name capped --memory 48M --detach
sleep 300
"""),
    ("code", """
check_container("capped", memory="48M", pids_limit=30, running=True)
"""),
    ("md", """
2. In section 2, how many CPU-seconds per second did the quota leave? Set `fraction` to the value you
   measured, rounded to one decimal, and check it against `--cpus 0.25`.

<details><summary>Hint</summary>

`round(quarter, 1)`: the loop ran for one second, so its CPU time is the share of one CPU it got.
</details>
""", """
2. 2절에서 할당량을 걸었을 때 1초마다 CPU 시간을 몇 초 받았나요? 측정한 값을 소수 첫째 자리까지 반올림해
   `fraction`에 넣고, `--cpus 0.25`와 비교해 확인해 보세요.

<details><summary>힌트</summary>

`round(quarter, 1)`: 반복문이 1초 동안 돌았으니, 받은 CPU 시간이 곧 CPU 하나 중에서 받은 몫입니다.
</details>
"""),
    ("code", """
from containerlab_magic.course import check_value
fraction = round(quarter, 1)
check_value(fraction in (0.2, 0.3), True, f"measured {fraction} is about 0.25")
"""),
    ("code", "%container rm -f limited capped"),
]

LESSONS["03-sharing-and-limits"] = LIMITS
LESSONS = dict(sorted(LESSONS.items()))

SANDBOX = [
    ("md", """
# 07 · Sandboxing code, and CI/CD

Because a container starts in milliseconds with its own limits, it is a good place to run code you do
not trust (a student's answer, a plugin) and a good unit for pipelines: the same image goes from a test
run to production. You pass data in and out of a Python container, fence untrusted code with limits,
build a tiny grader, and run this course's own kind of test (nbval) on a notebook.
""", """
# 07 · 코드 샌드박싱과 CI/CD

컨테이너는 자기만의 제한을 가진 채 몇 밀리초 만에 시작되기 때문에, 믿을 수 없는 코드(학생의 답안, 플러그인)를
실행하기 좋은 곳이고, 파이프라인의 단위로도 알맞습니다. 같은 이미지가 테스트 실행에서 운영 환경까지 그대로
갑니다. 이 노트북에서는 파이썬 컨테이너에 데이터를 넣고 빼 보고, 믿을 수 없는 코드를 제한으로 가두고,
작은 채점기를 만들고, 이 강좌를 검사하는 것과 같은 방식(nbval)으로 노트북 하나를 테스트합니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. Data in and out, as JSON

`--python` runs the cell's Python in a container. `--in numbers` sends a notebook variable in and
`--out summary` brings one back, as JSON (never pickle: nothing the container returns can run code in
your kernel).
""", """
## 1. JSON으로 데이터 넣고 빼기

`--python`은 셀의 파이썬 코드를 컨테이너 안에서 실행합니다. `--in numbers`는 노트북 변수를 안으로 보내고,
`--out summary`는 값을 밖으로 가져옵니다. 형식은 JSON입니다(pickle은 쓰지 않습니다. 컨테이너가 돌려주는 것이
여러분의 커널에서 코드를 실행할 수는 없다는 뜻입니다).
"""),
    ("code", "numbers = [3, 1, 4, 1, 5, 9, 2, 6]"),
    ("code", """
%%container --python --in numbers --out summary
import os
summary = {"total": sum(numbers), "largest": max(numbers), "computed by pid": os.getpid()}
"""),
    ("code", "summary"),
    ("md", """
## 2. A fence for untrusted code

Untrusted code gets no network (`--net none` is the default: only `lo`), a read-only root, and limits.
Here it tries to reach an address, write into `/usr`, and read the host's users: each attempt fails
inside the container.
""", """
## 2. 믿을 수 없는 코드를 가두는 울타리

믿을 수 없는 코드에는 네트워크를 주지 않고(`--net none`이 기본값이라 `lo`만 있습니다), 루트를 읽기 전용으로
두고, 제한을 겁니다. 아래 코드는 어떤 주소에 접속하고, `/usr`에 쓰고, 호스트의 사용자 목록을 읽으려고 합니다.
시도는 모두 컨테이너 안에서 실패합니다.
"""),
    ("code", """
%%container --python --read-only --memory 64M --pids-limit 16 --timeout 10
import os, socket
def attempt(what, action):
    try:
        action()
        print(f"{what}: allowed")
    except OSError as e:
        print(f"{what}: refused ({e.strerror})")

attempt("connect to 192.0.2.1:80", lambda: socket.create_connection(("192.0.2.1", 80), timeout=1))
attempt("write /usr/evil", lambda: open("/usr/evil", "w"))
print("network interfaces:", sorted(os.listdir("/sys/class/net")))
print("users this container knows:", [line.split(":")[0] for line in open("/etc/passwd")])
"""),
    ("md", """
## 3. A tiny grader

`containerlab_magic.course.grade` runs an answer in a fresh container (no network, read-only, 64 MiB,
half a CPU, 16 processes, a few seconds), calls the function on each test case and says what is right and
what is wrong. An endless loop or a memory hog only costs its own container.
""", """
## 3. 작은 채점기

`containerlab_magic.course.grade`는 답안을 새 컨테이너에서 실행합니다(네트워크 없음, 읽기 전용, 64 MiB,
CPU 절반, 프로세스 16개, 몇 초). 테스트 사례마다 함수를 불러 보고, 무엇이 맞고 무엇이 틀렸는지 알려 줍니다.
무한 반복이나 메모리를 마구 쓰는 답안도 자기 컨테이너만 희생시킬 뿐입니다.
"""),
    ("code", """
from containerlab_magic.course import grade
cases = [((2, 3), 5), ((-1, 1), 0), ((10, 20), 30)]
grade("def add(a, b):\\n    return a + b", "add", cases)
"""),
    ("code", 'grade("def add(a, b):\\n    return a - b", "add", cases)'),
    ("code", 'grade("def add(a, b):\\n    while True:\\n        pass", "add", cases, timeout=1)'),
    ("code", 'grade("def add(a, b):\\n    hog = bytearray(500 << 20)\\n    return a + b", "add", cases)'),
    ("md", """
## 4. How this course is tested: nbval

In CI every notebook of this course runs top to bottom under `pytest --nbval-lax`: a cell that fails (a
container that exits non-zero, a wrong assertion) fails the build. Here is the same test on a small
notebook written just now: build it, test it, see the verdict.
""", """
## 4. 이 강좌를 검사하는 방법: nbval

CI에서는 이 강좌의 노트북을 하나하나 `pytest --nbval-lax`로 처음부터 끝까지 실행합니다. 실패하는 셀(0이 아닌
코드로 끝나는 컨테이너, 틀린 assert)이 하나라도 있으면 빌드가 실패합니다. 방금 만든 작은 노트북에 같은 검사를
해 봅시다. 만들고, 테스트하고, 결과를 봅니다.
"""),
    ("code", """
import os, subprocess, sys, tempfile
import nbformat

folder = tempfile.mkdtemp()
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell("%load_ext containerlab_magic"),
            nbformat.v4.new_code_cell("%%container --image busybox\\necho built and tested in a container")]
nbformat.write(nb, os.path.join(folder, "pipeline.ipynb"))
run = subprocess.run([sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider", "--nbval-lax",
                      "--nbval-current-env", "pipeline.ipynb"], cwd=folder, capture_output=True, text=True)
print(run.stdout.strip().splitlines()[-1])
"""),
    ("code", """
import shutil
shutil.rmtree(folder)
"""),
    ("md", """
## Exercises

1. Write `square(x)` that returns x times x. The answer below is wrong for most inputs: grade it, read
   the report, fix the answer and grade it again.

<details><summary>Hint</summary>

`x * x` (or `x ** 2`). The grader shows each call and what it wanted.
</details>
""", """
## 연습 문제

1. x를 제곱해서 돌려주는 `square(x)`를 작성하세요. 아래 답안은 대부분의 입력에서 틀립니다. 채점하고,
   결과를 읽고, 답안을 고쳐서 다시 채점해 보세요.

<details><summary>힌트</summary>

`x * x`(또는 `x ** 2`). 채점기는 호출 하나하나와 기대한 값을 보여 줍니다.
</details>
"""),
    ("code", '''
answer = """
def square(x):
    return x * 2
"""
grade(answer, "square", [((2,), 4), ((3,), 9), ((-4,), 16)])
'''),
    ("md", """
2. An answer that tries to read a file outside its container must not see it. Check that the grader's
   container cannot read this notebook's own files.

<details><summary>Hint</summary>

The container's root is the image, not the host: the notebook's folder is not in it.
</details>
""", """
2. 자기 컨테이너 바깥의 파일을 읽으려는 답안은 그 파일을 볼 수 없어야 합니다. 채점기의 컨테이너가 이
   노트북의 파일을 읽을 수 없는지 확인해 보세요.

<details><summary>힌트</summary>

컨테이너의 루트는 호스트가 아니라 이미지입니다. 노트북 폴더는 그 안에 없습니다.
</details>
"""),
    ("code", """
import os
here = os.path.abspath("07-sandboxing-and-ci.ipynb")
peek = f"def peek():\\n    import os\\n    return os.path.exists({here!r})"
grade(peek, "peek", [((), False)])
"""),
]

LESSONS["07-sandboxing-and-ci"] = SANDBOX
LESSONS = dict(sorted(LESSONS.items()))

NAMESPACES = [
    ("md", """
# 02 · Isolation, one namespace at a time

Each container gets its own logically isolated view of the operating system, yet there is only one
kernel. The kernel does it with **namespaces**: one for process ids (pid), mounts (mnt), the host name
(uts), System V IPC (ipc), the network (net), user ids (user) and the cgroup tree (cgroup). Every process
has a link per namespace in `/proc/self/ns`; two processes share a namespace when the links are equal.
Here you look from both sides: the notebook's own process and a container.
""", """
# 02 · 격리, 네임스페이스 하나씩

컨테이너마다 논리적으로 격리된 운영체제 환경을 갖지만, 커널은 하나뿐입니다. 커널은 이것을 **네임스페이스**로
해냅니다. 프로세스 번호(pid), 마운트(mnt), 호스트 이름(uts), System V IPC(ipc), 네트워크(net), 사용자
번호(user), cgroup 트리(cgroup)마다 네임스페이스가 하나씩 있습니다. 모든 프로세스는 `/proc/self/ns`에
네임스페이스마다 링크를 하나씩 갖고 있고, 두 프로세스의 링크가 같으면 그 네임스페이스를 함께 쓰는 것입니다.
노트북 자신의 프로세스와 컨테이너, 양쪽에서 들여다봅시다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("code", """
import os
NAMESPACES = ["pid", "mnt", "uts", "ipc", "net", "user", "cgroup"]
notebook_ns = {name: os.readlink(f"/proc/self/ns/{name}") for name in NAMESPACES}
notebook_ns
"""),
    ("code", """
%%container --python --in NAMESPACES --out container_ns
import os
container_ns = {name: os.readlink(f"/proc/self/ns/{name}") for name in NAMESPACES}
"""),
    ("code", """
def compare(inside):
    for name in NAMESPACES:
        own = inside[name] != notebook_ns[name]
        print(f"{name:7} {'its own    ' if own else 'shared     '} {inside[name]:22} notebook: {notebook_ns[name]}")

compare(container_ns)
"""),
    ("md", """
In root mode the lab leaves the **user** namespace shared (uid 0 inside is uid 0 outside; capabilities
are dropped instead); on the rootless rung a user namespace maps your own uid to root inside.
Now turn one namespace *off*: `--net host` shares the notebook's network namespace (the lab warns:
the container then sees the host's interfaces).
""", """
root 모드에서 이 랩은 **user** 네임스페이스를 공유한 채로 둡니다(안의 uid 0이 바깥에서도 uid 0이고, 대신
capability를 덜어 냅니다). rootless 단계에서는 user 네임스페이스가 여러분의 uid를 안쪽의 root로 매핑합니다.
이제 네임스페이스 하나를 *꺼* 봅시다. `--net host`는 노트북의 네트워크 네임스페이스를 함께 씁니다(랩이 경고를
띄웁니다. 컨테이너가 호스트의 인터페이스를 보게 되기 때문입니다).
"""),
    ("code", """
%%container --python --net host --in NAMESPACES --out hostnet_ns
import os
hostnet_ns = {name: os.readlink(f"/proc/self/ns/{name}") for name in NAMESPACES}
"""),
    ("code", "compare(hostnet_ns)"),
    ("md", """
## What each namespace hides

**pid**: the container counts its own processes from 1. **uts**: its own host name (given with
`--hostname`; the container itself may not rename it). **mnt**: its own mount table and root.
**ipc**: its own System V shared memory (none yet). **net**: only `lo`. (**cgroup**: section 03.)
""", """
## 네임스페이스마다 가려 주는 것

**pid**: 컨테이너는 자기 프로세스를 1번부터 셉니다. **uts**: 자기만의 호스트 이름을 갖습니다(`--hostname`으로
정하며, 컨테이너 스스로는 바꿀 수 없습니다). **mnt**: 자기만의 마운트 표와 루트를 갖습니다. **ipc**: 자기만의
System V 공유 메모리(아직 없음)를 갖습니다. **net**: `lo`만 있습니다. (**cgroup**은 03에서 다룹니다.)
"""),
    ("code", """
import socket
def show_view():
    print("pid    processes:", sum(n.isdigit() for n in os.listdir("/proc")))
    print("uts    hostname:", socket.gethostname())
    print("mnt    mounts:", len(open("/proc/self/mounts").read().splitlines()))
    print("ipc    shared memory segments:", len(open("/proc/sysvipc/shm").read().splitlines()) - 1)
    print("net    interfaces:", sorted(os.listdir("/sys/class/net")))
show_view()
"""),
    ("code", """
%%container --image busybox --hostname inside
hostname changed-inside 2>&1 || echo "(renaming it needs CAP_SYS_ADMIN, which the container lacks)"
echo "pid    processes: $(ls -d /proc/[0-9]* | wc -l)"
echo "uts    hostname: $(hostname)"
echo "mnt    mounts: $(wc -l < /proc/self/mounts)"
echo "ipc    shared memory segments: $(($(wc -l < /proc/sysvipc/shm) - 1))"
echo "net    interfaces: $(ls /sys/class/net)"
"""),
    ("code", """
print("the notebook's hostname is still", socket.gethostname())
"""),
    ("md", """
## Exercises

1. Which namespace did `--net host` share? Set `shared` to its name and check it against what you
   measured.

<details><summary>Hint</summary>

Look at the line that says `shared` in the second comparison, and not in the first.
</details>
""", """
## 연습 문제

1. `--net host`는 어느 네임스페이스를 공유했나요? 그 이름을 `shared`에 넣고, 측정한 결과와 비교해 확인해 보세요.

<details><summary>힌트</summary>

두 번째 비교에서는 `shared`인데 첫 번째 비교에서는 아닌 줄을 찾아보세요.
</details>
"""),
    ("code", """
from containerlab_magic.course import check_value
shared = "net"
measured = [n for n in NAMESPACES if hostnet_ns[n] == notebook_ns[n] and container_ns[n] != notebook_ns[n]]
check_value([shared], measured, "the namespace --net host shares")
"""),
    ("md", """
2. Start a detached busybox container named `iso` with the host name `isolated`, running `sleep 300`.
   The attempt below names it but forgets the host name.

<details><summary>Hint</summary>

`--hostname isolated`; remove the old one first with `%container rm -f iso`.
</details>
""", """
2. 호스트 이름이 `isolated`이고 `sleep 300`을 실행하는 백그라운드 busybox 컨테이너 `iso`를 만드세요.
   아래 시도는 이름은 붙였지만 호스트 이름을 빠뜨렸습니다.

<details><summary>힌트</summary>

`--hostname isolated`. 먼저 `%container rm -f iso`로 기존 컨테이너를 지우세요.
</details>
"""),
    ("code", """
%%container --image busybox --name iso --detach
sleep 300
"""),
    ("code", """
from containerlab_magic.course import check_container
check_container("iso", hostname="isolated", running=True)
"""),
    ("code", "%container rm -f iso"),
]

LESSONS["02-isolation-namespaces"] = NAMESPACES
LESSONS = dict(sorted(LESSONS.items()))

IMAGES = [
    ("md", """
# 04 · Images and layers

An **image** is what a container starts from: a stack of read-only **layers** (each one a set of file
changes) plus a little configuration (the command to run, environment, working directory). Two images
built on the same base share that base's layers: they are stored once and mounted by both. In this
notebook you build images from Containerfile cells, look at their layers and history, see two images
share a layer, turn a container's changes into a new layer with `commit`, and run one image unchanged in a
"test" and a "production" setting.
""", """
# 04 · 이미지와 레이어

**이미지**는 컨테이너가 시작하는 출발점입니다. 읽기 전용 **레이어**(파일 변경 사항의 묶음) 여러 장이 쌓여 있고,
여기에 약간의 설정(실행할 명령, 환경 변수, 작업 디렉터리)이 붙어 있습니다. 같은 베이스 위에 만든 두 이미지는
그 베이스의 레이어를 함께 씁니다. 디스크에는 한 번만 저장되고, 두 이미지가 같은 레이어를 마운트합니다.
이 노트북에서는 Containerfile 셀로 이미지를 만들고, 레이어와 히스토리를 살펴보고, 두 이미지가 레이어를
공유하는 모습을 보고, `commit`으로 컨테이너의 변경 사항을 새 레이어로 만들고, 하나의 이미지를 그대로 둔 채
"테스트"와 "운영" 설정으로 실행해 봅니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. A base image, built from a cell

`%%container build -t NAME` takes the cell as a Containerfile. `FROM busybox` starts from the lab's
built-in busybox; each `RUN` runs in a real container and its file changes become one new layer.
""", """
## 1. 셀에서 베이스 이미지 만들기

`%%container build -t 이름`은 셀 내용을 Containerfile로 받습니다. `FROM busybox`는 랩에 들어 있는 busybox에서
시작하고, `RUN` 하나하나는 진짜 컨테이너 안에서 실행되며, 그 결과 바뀐 파일들이 새 레이어 한 장이 됩니다.
"""),
    ("code", """
%%container build -t course/base:1
FROM busybox
RUN mkdir -p /app && echo "the shared base layer" > /app/BASE
"""),
    ("md", """
## 2. Two images on one base

Both images below start `FROM course/base:1` and add one layer of their own. In the chart, a block
outlined in black is a layer that more than one image uses: it is on disk once.
""", """
## 2. 한 베이스 위의 두 이미지

아래 두 이미지는 모두 `FROM course/base:1`로 시작하고, 각자 레이어를 한 장씩 더합니다. 차트에서 검은 테두리가
있는 블록은 여러 이미지가 함께 쓰는 레이어입니다. 디스크에는 한 번만 있습니다.
"""),
    ("code", """
%%container build -t course/hello:1
FROM course/base:1
RUN echo 'echo "hello, built on: $(cat /app/BASE)"' > /app/run.sh
CMD ["sh", "/app/run.sh"]
"""),
    ("code", """
%%container build -t course/goodbye:1
FROM course/base:1
RUN echo 'echo "goodbye, built on: $(cat /app/BASE)"' > /app/run.sh
CMD ["sh", "/app/run.sh"]
"""),
    ("code", "%container images"),
    ("md", """
## 3. History: which instruction made which layer

`history` lists the steps that made an image, newest first, with the size of each step's layer.
Configuration steps (`CMD`, `ENV`) make no layer.
""", """
## 3. 히스토리: 어떤 명령이 어떤 레이어를 만들었나

`history`는 이미지를 만든 단계를 최근 것부터 보여 주고, 단계마다 만들어진 레이어의 크기를 함께 보여 줍니다.
설정 단계(`CMD`, `ENV`)는 레이어를 만들지 않습니다.
"""),
    ("code", "%container history course/hello:1"),
    ("code", """
from containerlab_magic import commands
from containerlab_magic.magics import _loaded

engine = next(iter(_loaded.values())).engine
hello = commands.image_inspect(engine, "course/hello:1")["RootFS"]["Layers"]
goodbye = commands.image_inspect(engine, "course/goodbye:1")["RootFS"]["Layers"]
shared = [layer for layer in hello if layer in goodbye]
print(f"hello has {len(hello)} layers, goodbye has {len(goodbye)}; they share {len(shared)}:")
for layer in shared:
    print("  ", layer[:19], "...")
"""),
    ("md", """
## 4. Running an image: its own command

An image carries its command (`CMD`). A container from it runs that command unless you give another.
""", """
## 4. 이미지 실행하기: 이미지에 담긴 명령

이미지는 실행할 명령(`CMD`)을 품고 있습니다. 그 이미지로 만든 컨테이너는 다른 명령을 주지 않는 한 그 명령을
실행합니다.
"""),
    ("code", """
%%container --image course/hello:1
sh /app/run.sh
"""),
    ("md", """
## 5. commit: a container's changes become a layer

A running container writes into its own thin writable layer on top of the image's read-only ones.
`commit` turns what it changed into a new layer of a new image.
""", """
## 5. commit: 컨테이너의 변경 사항이 레이어가 된다

실행 중인 컨테이너는 이미지의 읽기 전용 레이어들 위에 얹힌 얇은 쓰기 가능 레이어에 씁니다. `commit`은 그
컨테이너가 바꾼 내용을 새 이미지의 새 레이어로 만듭니다.
"""),
    ("code", """
%%container --detach --name workbench --image course/base:1
echo "written inside a running container" > /app/NOTE; sleep 300
"""),
    ("code", """
import time
time.sleep(0.5)  # (the container has written its file by now)
%container commit workbench course/noted:1
%container rm -f workbench
%container history course/noted:1
"""),
    ("md", """
## 6. One image, a test and a production setting

The image is the application author's part: code, runtime, libraries, a fixed digest. Where and how it
runs (limits, environment, network) is the operator's part. The same digest runs in both settings below;
only the settings differ.
""", """
## 6. 하나의 이미지, 테스트 설정과 운영 설정

이미지는 애플리케이션 작성자의 몫입니다. 코드, 런타임, 라이브러리가 담겨 있고 다이제스트(digest)가 정해져
있습니다. 어디서 어떻게 실행할지(제한, 환경 변수, 네트워크)는 운영자의 몫입니다. 아래에서는 같은 다이제스트의
이미지가 두 설정에서 실행되고, 달라지는 것은 설정뿐입니다.
"""),
    ("code", """
from containerlab_magic.runtime import ContainerSpec, Limits

digest = commands.image_inspect(engine, "course/hello:1")["ManifestDigest"]
settings = {"test": dict(env=(("MODE", "test"),), limits=Limits(memory=32 << 20)),
            "production": dict(env=(("MODE", "production"),), limits=Limits(memory=128 << 20, cpus=1.0))}
for where, options in settings.items():
    result = engine.run(ContainerSpec(("sh", "-c", "sh /app/run.sh; echo MODE=$MODE; cat /sys/fs/cgroup/memory.max "
                                       "2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"),
                                      image="course/hello:1", **options)).wait(30)
    print(f"[{where}] image {digest[:19]}...")
    print("   " + result.stdout.decode().strip().replace("\\n", "\\n   "))
"""),
    ("md", """
## Exercise

Build an image `course/exercise:1` **on top of `course/base:1`** whose own command prints `ready`.
Then run the check. (Hint: `FROM`, and a `CMD` in the exec form `["echo", "ready"]`.)
""", """
## 연습 문제

`course/base:1` **위에** 이미지 `course/exercise:1`을 만들어 보세요. 이 이미지에 담긴 명령은 `ready`를
출력해야 합니다. 다 만들었으면 확인 셀을 실행하세요. (힌트: `FROM`, 그리고 exec 형식의 `CMD`
`["echo", "ready"]`)
"""),
    ("code", """
%%container build -t course/exercise:1
FROM course/base:1
CMD ["echo", "ready"]
"""),
    ("code", """
from containerlab_magic.course import check_image
check_image("course/exercise:1", shares_with="course/base:1", output="ready")
"""),
    ("md", """
## Clean up

`rmi` removes names; `image prune` frees every layer no name uses any more.
""", """
## 정리

`rmi`는 이름을 지우고, `image prune`은 더 이상 어떤 이름도 쓰지 않는 레이어를 모두 지웁니다.
"""),
    ("code", "%container rmi course/exercise:1 course/noted:1 course/hello:1 course/goodbye:1 course/base:1"),
    ("code", "%container image prune"),
]
LESSONS["04-images-and-layers"] = IMAGES
LESSONS = dict(sorted(LESSONS.items()))

VM = [
    ("md", """
# 06 · Container vs virtual machine, measured

A **virtual machine** runs a whole guest operating system with its own kernel on emulated (or
hardware-assisted) hardware: it boots. A **container** is a group of ordinary processes on the host's one
kernel, given their own view of the machine: it starts. Here both do the same small job (print a line,
the kernel's release and the memory they see, then stop) side by side, and you compare time to first
output, memory, and kernel. The VM is real: Debian's own kernel, booted by qemu with a tiny initramfs this
notebook builds.
""", """
# 06 · 컨테이너와 가상 머신, 직접 재어 보기

**가상 머신**은 에뮬레이션된(또는 하드웨어의 도움을 받는) 하드웨어 위에서 자기 커널을 가진 게스트 운영체제
전체를 실행합니다. 즉 "부팅"합니다. **컨테이너**는 호스트의 하나뿐인 커널 위에서 도는 평범한 프로세스들의
묶음이고, 커널이 이들에게 자기만의 시야를 줄 뿐입니다. 즉 "시작"합니다. 여기서는 둘에게 같은 작은 일
(한 줄 출력, 커널 릴리스와 보이는 메모리 출력, 종료)을 시키고, 첫 출력까지 걸린 시간, 메모리, 커널을
나란히 비교합니다. 가상 머신은 진짜입니다. 데비안의 커널을 qemu로 부팅하고, 이 노트북이 직접 만든 작은
initramfs를 씁니다.
"""),
    ("code", "%load_ext containerlab_magic"),
    ROOT_NOTE, WHO,
    ("md", """
## 1. The same job, twice

`boot_container` starts a busybox container; `boot_vm` boots the VM (KVM when this host allows it,
otherwise qemu emulates the CPU in software, which is slower: the table says which). Both are timed from
outside, from the request to the first line the job prints, and to its end.
""", """
## 1. 같은 일을 두 번

`boot_container`는 busybox 컨테이너를 시작하고, `boot_vm`은 가상 머신을 부팅합니다(호스트가 허락하면 KVM을
쓰고, 아니면 qemu가 CPU를 소프트웨어로 에뮬레이션하는데, 이쪽이 더 느립니다. 어느 쪽인지는 표에 나옵니다).
둘 다 바깥에서, 요청한 순간부터 그 일이 첫 줄을 출력할 때까지, 그리고 끝날 때까지의 시간을 잽니다.
"""),
    ("code", """
from containerlab_magic.course_vm import boot_container, boot_vm, table_and_chart
from containerlab_magic.magics import _loaded

engine = next(iter(_loaded.values())).engine
container, vm = boot_container(engine), boot_vm()
table_and_chart([container, vm])
"""),
    ("code", """
print(f"the container printed its first line {vm.first_output_s / container.first_output_s:,.0f}x sooner "
      f"and held {vm.peak_memory / max(container.peak_memory, 1):,.0f}x less memory")
for boot in (container, vm):
    print(f"{boot.what}:", *boot.lines, sep="\\n   ")
"""),
    ("md", """
## 2. One kernel, or two

The container reports the **host's** kernel: it has no other. The VM reports its own guest kernel, which
can be any version (here, Debian's packaged one), because it is a separate operating system.
""", """
## 2. 커널이 하나인가, 둘인가

컨테이너는 **호스트의** 커널 릴리스를 보고합니다. 다른 커널이 없기 때문입니다. 가상 머신은 자기 게스트 커널을
보고하는데, 별도의 운영체제이기 때문에 어떤 버전이든 될 수 있습니다(여기서는 데비안 패키지의 커널입니다).
"""),
    ("code", """
import platform
print("host kernel:        ", platform.release())
print("container's kernel: ", container.kernel, "(the host's)" if container.kernel == platform.release() else "")
print("VM's kernel:        ", vm.kernel, "(its own)" if vm.kernel != platform.release() else "(the same version)")
"""),
    ("md", """
## 3. What a container cannot do

Sharing the kernel has a price: a container cannot load another kernel or kernel module, and it cannot run
a program made for another operating system's kernel. A Windows `.exe` is not something the Linux kernel
can execute, so there is no Windows container on Linux (a VM can run Windows, because it brings its own
kernel).
""", """
## 3. 컨테이너가 할 수 없는 일

커널을 함께 쓰는 데는 대가가 있습니다. 컨테이너는 다른 커널이나 커널 모듈을 올릴 수 없고, 다른 운영체제의
커널을 위해 만든 프로그램을 실행할 수 없습니다. 윈도우 `.exe`는 리눅스 커널이 실행할 수 있는 형식이 아니므로
리눅스 위에 윈도우 컨테이너는 없습니다(가상 머신은 자기 커널을 가져오므로 윈도우를 실행할 수 있습니다).
"""),
    ("code", """
%%container --python
import ctypes, os, platform

open("/tmp/hello.exe", "wb").write(b"MZ" + bytes(126))  # the start of a Windows program
os.chmod("/tmp/hello.exe", 0o755)
try:
    os.execv("/tmp/hello.exe", ["hello.exe"])
except OSError as e:
    print("run a Windows program:", e.strerror)

libc = ctypes.CDLL(None, use_errno=True)
calls = {"x86_64": (313, 320), "aarch64": (273, 294)}.get(platform.machine())
if calls:
    libc.syscall(calls[0], -1, b"", 0)  # finit_module: load a kernel module
    print("load a kernel module:", os.strerror(ctypes.get_errno()))
    libc.syscall(calls[1], -1, -1, 0, b"", 0)  # kexec_file_load: boot another kernel
    print("boot another kernel: ", os.strerror(ctypes.get_errno()))
"""),
    ("md", """
## Exercise

For each of the two, say whether it runs on the host's own kernel: set the two variables to `True` or
`False`, then run the check.
""", """
## 연습 문제

두 가지 각각이 호스트의 커널 위에서 도는지 답해 보세요. 두 변수를 `True` 또는 `False`로 정한 뒤 확인 셀을
실행하세요.
"""),
    ("code", """
container_uses_host_kernel = True
vm_uses_host_kernel = False
"""),
    ("code", """
from containerlab_magic.course import Report
report = Report("one kernel or two")
report.add(container_uses_host_kernel == (container.kernel == platform.release()),
           "the container: " + ("right" if container_uses_host_kernel else "look at section 2 again"))
report.add(vm_uses_host_kernel is False, "the VM: " + ("right: it boots its own" if not vm_uses_host_kernel
                                                       else "look at section 2 again"))
report
"""),
]
LESSONS["06-container-vs-vm"] = VM
LESSONS = dict(sorted(LESSONS.items()))

# Cells the rootless rungs cannot run, by lesson and first line: "needs-root" (link shaping,
# a cgroup the user has none of: --cpus, cgroup files) and "needs-host-kernel" (a VM booted
# from the host's /boot, which a pod has not).  course_notebooks.py tags them; the tests
# skip them when they run the course as an unprivileged user in a pod (tests/test_rootless.py).
ROOT_ONLY = {
    "03-sharing-and-limits": [
        "%%container --python --cpus 0.25 --out quarter",
        'print(f"with --cpus 0.25 the loop got {quarter:.2f} CPU-seconds per second: the quota caps it")',
        "%%container --python --pids-limit 20",
        "%%container --image busybox --name limited --memory 64M --cpus 0.5 --detach",
        "%cgroup limited", "%cgroup limited memory=128M",
        "from containerlab_magic.course import check_value",
    ],
    "04-images-and-layers": ["from containerlab_magic.runtime import ContainerSpec, Limits"],
    "05-networks-and-microservices": [  # (bridges work rootless: shaping a link does not)
        "%%container --image busybox --net course05 --name slow -p 28588:80 --net-rate 4mbit --detach",
        "def rate_mbit(port):",
    ],
}
HOST_KERNEL_ONLY = {
    "06-container-vs-vm": [
        "from containerlab_magic.course_vm import boot_container, boot_vm, table_and_chart",
        'print(f"the container printed its first line {vm.first_output_s / container.first_output_s:,.0f}x sooner "',
        "import platform", "from containerlab_magic.course import Report",
    ],
}


def tags_for(lesson: str, source: str) -> list[str]:
    first = source.strip("\n").splitlines()[0] if source.strip() else ""
    return ((["needs-root"] if first in ROOT_ONLY.get(lesson, ()) else [])
            + (["needs-host-kernel"] if first in HOST_KERNEL_ONLY.get(lesson, ()) else []))
