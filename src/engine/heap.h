/* heap.h -- binary min-heap of pointers with position tracking.
 *
 * Owns only its array; the items belong to the caller. Each item learns its
 * index through setpos() whenever it moves, so heap_remove() can take any
 * item out in O(log n). Invariant: less(items[parent], items[child]) is never
 * true of a child over its parent, i.e. items[0] is a minimum.
 */
#ifndef DK_HEAP_H
#define DK_HEAP_H

#include <stddef.h>

struct heap {
    void **items;
    size_t len;
    size_t cap;
    int (*less)(const void *a, const void *b);
    void (*setpos)(void *item, size_t pos);
};

void heap_init(struct heap *h, int (*less)(const void *, const void *),
               void (*setpos)(void *, size_t));
void heap_destroy(struct heap *h);
/* Returns 0, or -1 if out of memory (the heap is unchanged). */
int heap_insert(struct heap *h, void *item);
/* Removes and returns the item at index i (NULL if i is out of range). */
void *heap_remove(struct heap *h, size_t i);
/* Restores order after the key of the item at index i changed. */
void heap_fix(struct heap *h, size_t i);
static inline void *heap_peek(const struct heap *h) { return h->len ? h->items[0] : NULL; }

#endif
