/*
 * A main() for fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once over
 * every regular file named on the command line or found (non-recursively) in a
 * directory named there. Normal builds use it to replay the seed corpus and saved
 * crashers as a regression test; a target signals a bug by aborting. Finding no
 * input at all is a failure, so an emptied corpus cannot pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "fuzz.h"

static int run_file(const char *path)
{
	struct co_buf b = CO_BUF_INIT;
	char chunk[65536];
	size_t n;
	FILE *f;

	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		co_buf_append(&b, chunk, n);
	fclose(f);
	printf("running '%s' (%zu bytes)\n", path, b.len);
	fflush(stdout);
	/* a private heap copy, so reads past the end trip the sanitizers */
	{
		uint8_t *copy = co_malloc(b.len ? b.len : 1);

		memcpy(copy, b.data ? b.data : "", b.len);
		LLVMFuzzerTestOneInput(copy, b.len);
		free(copy);
	}
	co_buf_release(&b);
	return 0;
}

static int run_dir(const char *dir, size_t *count)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "open '%s': %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char *path = co_asprintf("%s/%s", dir, de->d_name);

		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				r = -1;
			else
				(*count)++;
		}
		free(path);
	}
	closedir(d);
	return r;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	struct stat st;
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "'%s': %s\n", argv[i], strerror(errno));
			failed = 1;
		} else if (S_ISDIR(st.st_mode)) {
			failed |= run_dir(argv[i], &count) < 0;
		} else if (run_file(argv[i]) == 0) {
			count++;
		} else {
			failed = 1;
		}
	}
	printf("%zu inputs replayed\n", count);
	if (count == 0) {
		fprintf(stderr, "no inputs found\n");
		return 1;
	}
	return failed;
}
