// tcx_attach: load noop.bpf.o and attach it with TCX links to the ingress and
// egress of each named interface, pinning each link under PIN_DIR so it stays
// after this process exits. `rm -r PIN_DIR` detaches them all.
//   tcx_attach OBJECT PIN_DIR IFACE...
// (bpftool 7.1 cannot attach TCX, and libbpf 1.1 has no TCX API, so the link
// is made with the generic link_create call and the kernel's attach types.)
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TCX_INGRESS 46 /* BPF_TCX_INGRESS, kernel >= 6.6 */
#define TCX_EGRESS 47

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tcx_attach OBJECT PIN_DIR IFACE...\n");
        return 2;
    }
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj || bpf_object__load(obj)) {
        fprintf(stderr, "tcx_attach: loading %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "bench_noop");
    if (!prog) {
        fprintf(stderr, "tcx_attach: %s has no program bench_noop\n", argv[1]);
        return 1;
    }
    mkdir(argv[2], 0700);
    for (int i = 3; i < argc; i++) {
        unsigned ifindex = if_nametoindex(argv[i]);
        if (!ifindex) {
            fprintf(stderr, "tcx_attach: no interface %s\n", argv[i]);
            return 1;
        }
        int types[2] = {TCX_INGRESS, TCX_EGRESS};
        for (int t = 0; t < 2; t++) {
            int link = bpf_link_create(bpf_program__fd(prog), (int)ifindex, types[t], NULL);
            char pin[512];
            snprintf(pin, sizeof pin, "%s/%s-%s", argv[2], argv[i], t ? "egress" : "ingress");
            if (link < 0 || bpf_obj_pin(link, pin)) {
                fprintf(stderr, "tcx_attach: %s %s: %s\n", argv[i], t ? "egress" : "ingress",
                        strerror(errno));
                return 1;
            }
        }
    }
    return 0;
}
