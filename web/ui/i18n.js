// Translations. Every visible string comes from /i18n/<locale>.json; t() never shows a raw key
// silently in production: a missing key is logged and shown in brackets so tests catch it.

export const LOCALES = [
  { tag: 'zh-CN', name: '中文', dir: 'ltr' },
  { tag: 'en', name: 'English', dir: 'ltr' },
  { tag: 'bo', name: 'བོད་ཡིག', dir: 'ltr' },
  { tag: 'ug', name: 'ئۇيغۇرچە', dir: 'rtl' },
];
export const DEFAULT_LOCALE = 'zh-CN';
const STORAGE_KEY = 'tongxin.locale';

let current = DEFAULT_LOCALE;
let strings = {};

export function locale() { return current; }

export function isSupported(tag) { return LOCALES.some((l) => l.tag === tag); }

// The locale to start with before anyone logs in: the last one chosen here, else the browser's.
export function initialLocale() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (isSupported(saved)) return saved;
  for (const lang of navigator.languages || []) {
    const hit = LOCALES.find((l) => l.tag.toLowerCase() === lang.toLowerCase()) ||
      LOCALES.find((l) => l.tag.split('-')[0] === lang.split('-')[0].toLowerCase());
    if (hit) return hit.tag;
  }
  return DEFAULT_LOCALE;
}

export async function setLocale(tag) {
  if (!isSupported(tag)) tag = DEFAULT_LOCALE;
  const res = await fetch(`/i18n/${tag}.json`);
  if (!res.ok) throw new Error(`cannot load translations for ${tag}`);
  strings = await res.json();
  current = tag;
  localStorage.setItem(STORAGE_KEY, tag);
  const root = document.documentElement;
  root.lang = tag;
  root.dir = LOCALES.find((l) => l.tag === tag).dir;
  document.title = t('app.name');
}

export function t(key, vars = {}) {
  let s = strings[key];
  if (s === undefined) {
    console.error(`missing translation ${current}:${key}`);
    return `[${key}]`;
  }
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
