/*
 * A main() for the fuzz harnesses outside libFuzzer: runs LLVMFuzzerTestOneInput once on
 * every file named on the command line (a directory: every file in it, sorted by name),
 * so that ctest replays the committed corpus and every regression input under the
 * ordinary gcc build and `make asan`. Exits 0 when every input ran (a crash, an abort
 * or a sanitizer report ends the process with a failure as usual); a path that does
 * not exist is skipped with a note (a harness may have no regressions yet).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = b;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    /* An exact-size copy, as libFuzzer gives: reads past the input show under ASan. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    unsigned ran = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st)) {
            fprintf(stderr, "replay: %s: not there, skipped\n", argv[i]);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed += run_file(argv[i]) != 0;
            ran++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed++;
            continue;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue; /* ., .., and hidden files such as .gitkeep */
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                char **g = realloc(names, cap * sizeof *g);
                if (!g) break;
                names = g;
            }
            size_t plen = strlen(argv[i]) + strlen(e->d_name) + 2;
            if ((names[n] = malloc(plen)) == NULL) break;
            snprintf(names[n], plen, "%s/%s", argv[i], e->d_name);
            n++;
        }
        closedir(d);
        if (n) qsort(names, n, sizeof *names, cmp_names);
        for (size_t k = 0; k < n; k++) {
            failed += run_file(names[k]) != 0;
            ran++;
            free(names[k]);
        }
        free(names);
    }
    printf("replay: %u inputs, %u unreadable\n", ran, failed);
    return failed ? 1 : 0;
}
