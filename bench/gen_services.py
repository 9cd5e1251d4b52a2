#!/usr/bin/env python3
"""Generate N Services x E endpoints for bench/node-sync.sh.

Writes, into the directory given:
  objects.yaml      Nodes, Services (NodePort, Cluster) and EndpointSlices,
                    as `kubectl get -o yaml` would print them;
  kube-proxy.rules  the equivalent kube-proxy iptables-mode ruleset, in the
                    shape kube-proxy writes it (KUBE-SERVICES, KUBE-SVC-*,
                    KUBE-SEP-*, statistic --mode random --probability,
                    KUBE-MARK-MASQ, KUBE-POSTROUTING), for iptables-restore.

Addresses are private ranges; they only ever exist inside a scratch
network namespace.
"""
import base64
import hashlib
import sys


def chain(prefix, text):
    h = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]
    return f"{prefix}-{h}"


def cluster_ip(s):
    return f"10.96.{s // 250}.{s % 250 + 1}"


def endpoints(s, e):
    return [f"10.{100 + (s * e + i) // 65000}.{((s * e + i) // 250) % 260 % 250}.{(s * e + i) % 250 + 1}"
            for i in range(e)]


def main():
    out, n, e = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    y = []
    y.append("apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.244.0.0/16}\n"
             "status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}\n")
    nat = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]",
           ":KUBE-MARK-MASQ - [0:0]"]
    rules = []
    # The hooks kube-proxy installs in the built-in chains.
    rules.append("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
    rules.append("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
    rules.append("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING")
    rules.append("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN")
    rules.append("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000")
    rules.append("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully")
    rules.append("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000")
    for s in range(n):
        name = f"svc{s}"
        cip = cluster_ip(s)
        node_port = 30000 + (s % 2700) if s < 2700 else None
        y.append(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bench}}\n"
                 f"spec:\n  type: {'NodePort' if node_port else 'ClusterIP'}\n  clusterIP: {cip}\n"
                 f"  ports: [{{name: http, port: 80, targetPort: 8080{', nodePort: ' + str(node_port) if node_port else ''}}}]\n")
        eps = endpoints(s, e)
        y.append(f"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                 f"metadata: {{name: {name}-1, namespace: bench, labels: {{kubernetes.io/service-name: {name}}}}}\n"
                 f"addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n"
                 + "".join(f"- {{addresses: [{ip}], nodeName: node-1}}\n" for ip in eps))
        svc = chain("KUBE-SVC", f"bench/{name}:httptcp")
        nat.append(f":{svc} - [0:0]")
        rules.append(f"-A KUBE-SERVICES -m comment --comment \"bench/{name}:http cluster IP\" -m tcp -p tcp -d {cip} --dport 80 -j {svc}")
        rules.append(f"-A {svc} -m comment --comment \"bench/{name}:http cluster IP\" -m tcp -p tcp -d {cip} --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ")
        if node_port:
            ext = chain("KUBE-EXT", f"bench/{name}:httptcp")
            nat.append(f":{ext} - [0:0]")
            rules.append(f"-A KUBE-NODEPORTS -m comment --comment bench/{name}:http -m tcp -p tcp --dport {node_port} -j {ext}")
            rules.append(f"-A {ext} -m comment --comment \"masquerade traffic for bench/{name}:http external destinations\" -j KUBE-MARK-MASQ")
            rules.append(f"-A {ext} -j {svc}")
        for i, ip in enumerate(eps):
            sep = chain("KUBE-SEP", f"bench/{name}:httptcp:{ip}:8080")
            nat.append(f":{sep} - [0:0]")
            rules.append(f"-A {sep} -m comment --comment bench/{name}:http -s {ip} -j KUBE-MARK-MASQ")
            rules.append(f"-A {sep} -m comment --comment bench/{name}:http -m tcp -p tcp -j DNAT --to-destination {ip}:8080")
            if i < e - 1:
                rules.append(f"-A {svc} -m comment --comment \"bench/{name}:http -> {ip}:8080\" -m statistic --mode random --probability {1.0 / (e - i):0.10f} -j {sep}")
            else:
                rules.append(f"-A {svc} -m comment --comment \"bench/{name}:http -> {ip}:8080\" -j {sep}")
    rules.append("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")
    with open(f"{out}/objects.yaml", "w") as f:
        f.write("".join(y))
    with open(f"{out}/kube-proxy.rules", "w") as f:
        f.write("\n".join(nat + rules + ["COMMIT", ""]))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--service":
        # bench/node-datapath.sh: the cluster IP and endpoints of service S
        # of N, one per line.
        s, e = int(sys.argv[2]), int(sys.argv[3])
        print("\n".join([cluster_ip(s)] + endpoints(s, e)))
    else:
        main()
