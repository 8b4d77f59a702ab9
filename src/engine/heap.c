/* heap.c -- binary min-heap with position tracking (see heap.h). */
#include "heap.h"

#include <stdlib.h>

void heap_init(struct heap *h, int (*less)(const void *, const void *),
               void (*setpos)(void *, size_t))
{
    h->items = NULL;
    h->len = h->cap = 0;
    h->less = less;
    h->setpos = setpos;
}

void heap_destroy(struct heap *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

static void set(struct heap *h, size_t i, void *x)
{
    h->items[i] = x;
    h->setpos(x, i);
}

/* Moves the item at i towards the root while it is less than its parent.
 * Returns its final index. */
static size_t up(struct heap *h, size_t i)
{
    void *x = h->items[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!h->less(x, h->items[p]))
            break;
        set(h, i, h->items[p]);
        i = p;
    }
    set(h, i, x);
    return i;
}

static void down(struct heap *h, size_t i)
{
    void *x = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        void *best = x;
        if (l < h->len && h->less(h->items[l], best)) {
            m = l;
            best = h->items[l];
        }
        if (r < h->len && h->less(h->items[r], best))
            m = r;
        if (m == i)
            break;
        set(h, i, h->items[m]);
        i = m;
    }
    set(h, i, x);
}

int heap_insert(struct heap *h, void *item)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        void **p = realloc(h->items, cap * sizeof *p);
        if (!p)
            return -1;
        h->items = p;
        h->cap = cap;
    }
    h->items[h->len] = item;
    up(h, h->len++);
    return 0;
}

void heap_fix(struct heap *h, size_t i)
{
    if (i >= h->len)
        return;
    if (up(h, i) == i)
        down(h, i);
}

void *heap_remove(struct heap *h, size_t i)
{
    if (i >= h->len)
        return NULL;
    void *x = h->items[i];
    h->len--;
    if (i < h->len) {
        set(h, i, h->items[h->len]);
        heap_fix(h, i);
    }
    /* Shrink when mostly empty so a burst does not pin memory forever. */
    if (h->cap > 64 && h->len < h->cap / 4) {
        void **p = realloc(h->items, (h->cap / 2) * sizeof *p);
        if (p) {
            h->items = p;
            h->cap /= 2;
        }
    }
    return x;
}
