/* heap_tour.c — uvmem's malloc front end from C: a hash table built, grown and freed in
 * the paged heap, with the heap's statistics before and after.
 *
 *   build/examples/heap_tour [ENTRIES]      (default 1000000)
 *
 * Every block comes from uvmem_malloc & co.: the heap's pages are filled on first touch
 * by uvmem (or by the allocating thread, for fresh spans), and freed spans give their
 * frames back to the pool after a short delay — watch "resident" fall after the frees. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uvmem/uvmem.h"

typedef struct entry {
  struct entry* next;
  uint64_t key;
  char value[24];
} entry;

static void show(const char* when) {
  uvmem_malloc_stats s;
  uvmem_malloc_stats_get(&s);
  printf("%-14s mallocs %9llu  frees %9llu  spans %7.1f MiB  resident %7.1f MiB  %s\n", when,
         (unsigned long long)s.malloc_calls, (unsigned long long)s.free_calls,
         s.spans_bytes_now / 1048576.0, s.heap_resident_pages * 4096 / 1048576.0,
         s.paged ? "(paged by uvmem)" : "(kernel memory)");
}

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  show("start");
  size_t buckets = 1024;
  entry** table = uvmem_calloc(buckets, sizeof(entry*)); /* reads zero: demand-zero pages */
  if (table == NULL) {
    perror("uvmem_calloc");
    return 1;
  }
  for (size_t i = 0; i < n; ++i) {
    if (i > buckets * 2) { /* grow: realloc moves a large table's pages, then rehash */
      entry** grown = uvmem_reallocarray(table, buckets * 4, sizeof(entry*));
      if (grown == NULL) {
        perror("uvmem_reallocarray");
        return 1;
      }
      memset(grown + buckets, 0, buckets * 3 * sizeof(entry*));
      table = grown;
      for (size_t b = 0; b < buckets; ++b) {
        entry* e = table[b];
        table[b] = NULL;
        while (e != NULL) {
          entry* next = e->next;
          size_t to = e->key % (buckets * 4);
          e->next = table[to];
          table[to] = e;
          e = next;
        }
      }
      buckets *= 4;
    }
    entry* e = uvmem_malloc(sizeof(entry));
    if (e == NULL) {
      perror("uvmem_malloc");
      return 1;
    }
    e->key = i * 2654435761u;
    snprintf(e->value, sizeof(e->value), "v%zu", i);
    e->next = table[e->key % buckets];
    table[e->key % buckets] = e;
  }
  show("built");
  size_t found = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t key = i * 2654435761u;
    char want[24];
    snprintf(want, sizeof(want), "v%zu", i);
    for (entry* e = table[key % buckets]; e != NULL; e = e->next) {
      if (e->key == key && strcmp(e->value, want) == 0) {
        ++found;
        break;
      }
    }
  }
  printf("%zu of %zu entries found\n", found, n);
  for (size_t b = 0; b < buckets; ++b) {
    for (entry* e = table[b]; e != NULL;) {
      entry* next = e->next;
      uvmem_free(e);
      e = next;
    }
  }
  uvmem_free(table);
  show("freed");
  usleep(100 * 1000); /* the purge delay passes: frames go back to the pool */
  printf("trim gave back %zu pages\n", uvmem_malloc_trim());
  show("after purge");
  return found == n ? 0 : 1;
}
