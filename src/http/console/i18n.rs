//! The console's words in English and Russian, and how dates and money read in each. The
//! `org.locale` setting decides, `?lang=` overrides (and is remembered in a cookie). A key
//! missing from a language falls back to English, so a page never shows a bare key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" | "en-us" | "en-gb" => Some(Lang::En),
            "ru" | "ru-ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }
}

/// (key, English, Russian).
const WORDS: &[(&str, &str, &str)] = &[
    ("app", "inflow", "inflow"),
    ("skip", "Skip to the content", "К содержимому"),
    ("dashboard", "Dashboard", "Сводка"),
    ("my_work", "My work", "Мои дела"),
    ("campaigns", "Campaigns", "Кампании"),
    ("sign_in", "Sign in", "Войти"),
    ("sign_out", "Sign out", "Выйти"),
    ("email", "E-mail", "Эл. почта"),
    ("password", "Password", "Пароль"),
    ("api_token", "API token", "API-токен"),
    ("or_token", "Or sign in with an API token", "Или войдите по API-токену"),
    ("bad_sign_in", "The e-mail, password or token is not right.", "Неверная эл. почта, пароль или токен."),
    (
        "too_many",
        "Too many sign-in attempts. Wait a minute and try again.",
        "Слишком много попыток входа. Подождите минуту и попробуйте снова.",
    ),
    ("signed_in_as", "Signed in as", "Вы вошли как"),
    ("new_leads_per_day", "New leads per day, by source", "Новые интересы по дням, по источникам"),
    ("last_n_days", "Last {n} days", "За {n} дней"),
    ("leads_by_source", "Leads by source", "Интересы по источникам"),
    ("leads_by_campaign", "Leads by campaign", "Интересы по кампаниям"),
    ("leads_by_owner", "Leads by owner", "Интересы по ответственным"),
    (
        "leads_this_week",
        "Leads opened this week and last, by state",
        "Интересы, открытые на этой и прошлой неделе, по состоянию",
    ),
    ("this_week", "This week", "Эта неделя"),
    ("last_week", "Last week", "Прошлая неделя"),
    ("day", "Day", "День"),
    ("total", "Total", "Всего"),
    ("count", "Count", "Количество"),
    ("none", "(none)", "(нет)"),
    ("no_data", "No data yet.", "Пока нет данных."),
    ("my_open_activities", "My open activities", "Мои открытые дела"),
    ("subject", "Subject", "Тема"),
    ("type", "Type", "Тип"),
    ("due", "Due", "Срок"),
    ("regarding", "Regarding", "В отношении"),
    ("actions", "Actions", "Действия"),
    ("complete", "Complete", "Выполнить"),
    ("cancel", "Cancel", "Отменить"),
    ("overdue", "Overdue", "Просрочено"),
    ("nothing_open", "Nothing open. Well done.", "Открытых дел нет."),
    ("overdue_by_owner", "Overdue activities by owner", "Просроченные дела по ответственным"),
    ("escalated", "Escalated to a manager", "Передано руководителю"),
    ("owner", "Owner", "Ответственный"),
    ("done_completed", "Completed.", "Выполнено."),
    ("done_canceled", "Canceled.", "Отменено."),
    ("budget_vs_actual", "Budget vs actual cost", "Бюджет и фактические затраты"),
    ("budget", "Budget", "Бюджет"),
    ("actual", "Actual cost", "Фактические затраты"),
    ("over_budget", "over budget", "сверх бюджета"),
    ("over_budget_col", "Over budget?", "Сверх бюджета?"),
    ("source", "Source", "Источник"),
    ("response_rate", "Response rate vs expected, %", "Отклик и ожидаемый отклик, %"),
    ("responses", "Responses", "Отклики"),
    ("expected", "Expected", "Ожидалось"),
    ("campaign", "Campaign", "Кампания"),
    ("waves", "E-mail waves", "Рассылки"),
    ("wave", "Wave", "Рассылка"),
    ("state", "State", "Состояние"),
    ("targeted", "Targeted", "Адресатов"),
    ("sent", "Sent", "Отправлено"),
    ("pending", "Pending", "В очереди"),
    ("failed", "Failed", "Ошибки"),
    ("bounced", "Bounced", "Возвраты"),
    ("responded", "Responded", "Откликнулись"),
    ("canceled", "Canceled", "Отменено"),
    ("wave_progress", "Wave progress", "Ход рассылки"),
    ("failed_by_reason", "Failed, by reason", "Ошибки по причинам"),
    ("excluded_by_reason", "Excluded, by reason", "Исключены, по причинам"),
    ("pause", "Pause", "Приостановить"),
    ("resume", "Resume", "Продолжить"),
    ("cancel_wave", "Cancel the wave", "Отменить рассылку"),
    ("refreshing", "Refresh every 5 seconds while the wave sends", "Обновлять каждые 5 секунд, пока идёт рассылка"),
    ("started", "Started", "Начата"),
    ("finished", "Finished", "Завершена"),
    ("scheduled_for", "Scheduled for", "Запланирована на"),
    ("new_wave", "New e-mail wave", "Новая рассылка"),
    (
        "relay_held",
        "The mail waits (nobody is failed); the relay answered:",
        "Письма ждут (ни один получатель не потерян); ответ сервера отправки:",
    ),
    ("wave_name", "Name in the lists (empty: the subject)", "Название в списках (пусто — тема)"),
    ("wave_subject", "Subject", "Тема письма"),
    ("wave_text", "Text", "Текст"),
    ("wave_html", "HTML version (optional)", "HTML-версия (необязательно)"),
    (
        "wave_fields",
        "Filled in for each recipient: {{ first_name }}, {{ last_name }}, {{ full_name }}, {{ email }}, {{ \
            unsubscribe_url }}.",
        "Подставляются для каждого получателя: {{ first_name }}, {{ last_name }}, {{ full_name }}, {{ email \
            }}, {{ unsubscribe_url }}.",
    ),
    ("wave_lists", "Send to", "Кому"),
    ("wave_start", "Start (empty: now)", "Начало (пусто — сразу)"),
    ("wave_rate", "Messages per minute (empty: no limit of its own)", "Писем в минуту (пусто — без своего предела)"),
    ("schedule_wave", "Schedule the wave", "Запланировать рассылку"),
    ("wave_needs_text", "A wave needs a subject and a text.", "Для рассылки нужны тема и текст."),
    ("wave_bad_rate", "Messages per minute: a whole number above 0.", "Писем в минуту: целое число больше 0."),
    (
        "wave_not_ready",
        "Waves go out for a campaign that is ready to launch or launched.",
        "Рассылки отправляются для кампании, готовой к запуску или запущенной.",
    ),
    (
        "no_lists_to_send",
        "Add a marketing list to the campaign first.",
        "Сначала добавьте в кампанию маркетинговый список.",
    ),
    ("status_change", "Change the status", "Сменить статус"),
    ("forbidden", "Your role may not do this.", "Вашей роли это не разрешено."),
    (
        "bad_form",
        "This form has expired or did not come from this page. Open the page again and retry.",
        "Форма устарела или отправлена не с этой страницы. Откройте страницу заново и повторите.",
    ),
    ("not_found", "Not found.", "Не найдено."),
    ("error", "Something went wrong", "Что-то пошло не так"),
    ("back", "Back", "Назад"),
    ("language", "Language", "Язык"),
    ("chart_data", "Chart data", "Данные диаграммы"),
    ("scheduled", "Scheduled", "Запланирована"),
    ("sending", "Sending", "Идёт отправка"),
    ("paused", "Paused", "Приостановлена"),
    ("completed", "Completed", "Завершена"),
    ("aborted", "Aborted", "Прервана"),
    ("no_campaigns", "No campaigns yet.", "Кампаний пока нет."),
    ("no_waves", "No e-mail waves.", "Рассылок нет."),
    ("leads", "Leads", "Интересы"),
    ("view_my-open", "My open leads", "Мои открытые"),
    ("view_open", "Open leads", "Открытые"),
    ("view_opened-this-week", "Opened this week", "Открытые на этой неделе"),
    ("view_opened-last-week", "Opened last week", "Открытые на прошлой неделе"),
    ("view_stale", "Without activity", "Без активности"),
    ("view_qualified", "Qualified", "Квалифицированные"),
    ("view_disqualified", "Disqualified", "Дисквалифицированные"),
    ("view_all", "All leads", "Все"),
    ("name", "Name", "Имя"),
    ("company", "Company", "Компания"),
    ("new_lead", "New lead", "Новый интерес"),
    ("first_name", "First name", "Имя"),
    ("last_name", "Last name", "Фамилия"),
    ("create", "Create", "Создать"),
    ("create_anyway", "Create it anyway: it is not a duplicate", "Всё равно создать: это не дубликат"),
    ("possible_duplicate", "A record that may be the same", "Запись, которая может быть той же"),
    ("done_created", "Created.", "Создан."),
    ("done_edited", "Saved.", "Сохранено."),
    ("job_title", "Job title", "Должность"),
    ("mobile", "Mobile", "Мобильный"),
    ("required", "is required", "обязательно"),
    ("edit", "Edit", "Изменить"),
    ("save", "Save", "Сохранить"),
    ("phone", "Phone", "Телефон"),
    ("status", "Status", "Статус"),
    ("created", "Created", "Создан"),
    ("all_sources", "All sources", "Все источники"),
    ("filter", "Filter", "Отобрать"),
    ("page_of", "Page {page} of {pages}", "Страница {page} из {pages}"),
    ("previous", "Previous", "Назад"),
    ("next", "Next", "Далее"),
    ("no_leads", "No leads in this view.", "В этом представлении интересов нет."),
    ("timeline", "Timeline", "Хронология"),
    ("qualify", "Qualify", "Квалифицировать"),
    ("qualify_account", "Create an account", "Создать организацию"),
    ("qualify_contact", "Create a contact", "Создать контакт"),
    ("qualify_opportunity", "Create an opportunity", "Создать возможную сделку"),
    ("disqualify", "Disqualify", "Дисквалифицировать"),
    ("reason", "Reason", "Причина"),
    ("reactivate", "Reactivate", "Открыть снова"),
    ("done_qualified", "Qualified.", "Квалифицирован."),
    ("done_disqualified", "Disqualified.", "Дисквалифицирован."),
    ("done_reactivated", "Reactivated.", "Открыт снова."),
    ("nothing_yet", "Nothing yet.", "Пока ничего."),
    ("operations", "Operations", "Эксплуатация"),
    ("role_admin", "administrator", "администратор"),
    ("role_marketer", "marketer", "маркетолог"),
    ("role_viewer", "viewer", "наблюдатель"),
    ("figures", "Figures", "Показатели"),
    ("list", "Marketing list", "Маркетинговый список"),
    ("optouts", "Members no marketing e-mail reaches", "Кому маркетинговые письма не уходят"),
    ("shown_of", "{shown} of {total} shown", "Показано {shown} из {total}"),
    ("no_members", "No members.", "Участников нет."),
    ("nobody_opted_out", "Everyone can be reached.", "Письма дойдут до всех."),
    ("response_per_wave", "Response rate per wave vs expected, %", "Отклик по рассылкам и ожидаемый, %"),
    ("lists", "Marketing lists", "Маркетинговые списки"),
    ("members", "Members", "Участники"),
    ("dynamic", "Dynamic", "Динамический"),
    ("yes", "yes", "да"),
    ("no", "no", "нет"),
    ("no_lists", "No lists linked.", "Списки не привязаны."),
    ("all_campaigns", "All campaigns", "Все кампании"),
    ("start", "Start", "Начало"),
    ("end", "End", "Окончание"),
    ("opportunities", "Opportunities", "Возможные сделки"),
    ("contacts", "Contacts", "Контакты"),
    ("none_yet", "None yet.", "Пока нет."),
    ("won", "Won", "Выиграно"),
    ("city", "City", "Город"),
    ("customer", "Customer", "Клиент"),
    ("estimated_value", "Estimated value", "Оценка суммы"),
    ("probability", "Probability, %", "Вероятность, %"),
    ("stage", "Stage", "Стадия"),
    ("actual_value", "Actual value", "Фактическая сумма"),
    ("close_date", "Closed on", "Дата закрытия"),
    ("topic", "Topic", "Тема сделки"),
    ("estimated_close", "Estimated close date", "Ожидаемая дата закрытия"),
    ("description", "Description", "Описание"),
    ("not_a_number", "is not a number", "— не число"),
    ("win", "Mark as won", "Отметить выигранной"),
    ("lose", "Mark as lost", "Отметить проигранной"),
    ("lost_canceled", "Canceled", "Отменена"),
    ("lost_out_sold", "Out-sold", "Уступили конкуренту"),
    ("done_won", "Marked as won.", "Отмечена как выигранная."),
    ("done_lost", "Marked as lost.", "Отмечена как проигранная."),
    ("done_reopened", "Reopened.", "Открыта снова."),
    ("bad_amount", "The amount is not a number.", "Сумма — не число."),
    ("incoming", "Incoming", "Входящий"),
    ("outgoing", "Outgoing", "Исходящий"),
    ("direction", "Direction", "Направление"),
    ("bad_date", "The date is not a date and time.", "Дата — не дата и время."),
    ("new_activity", "New activity", "Новое дело"),
    ("done_activity_created", "The activity was created.", "Дело создано."),
    ("activity", "Activity", "Дело"),
    ("customers", "Customers", "Клиенты"),
    ("account_name", "Name", "Название"),
    ("accounts", "Accounts", "Организации"),
    ("new_contact", "New contact", "Новый контакт"),
    ("new_account", "New account", "Новая организация"),
    ("new_opportunity", "New opportunity", "Новая возможная сделка"),
    ("search_name", "Name begins with", "Имя начинается с"),
    ("search", "Search", "Найти"),
    ("no_records", "Nothing found.", "Ничего не найдено."),
    ("test_send", "Send a test", "Отправить тест"),
    ("test_send_to", "Test message to", "Тестовое письмо на"),
    ("test_sent", "The test message was handed to the relay.", "Тестовое письмо передано почтовому серверу."),
    ("calls_per_day", "Inbound calls per day", "Входящие звонки по дням"),
    ("calls_per_line", "Inbound calls per line", "Входящие звонки по линиям"),
    ("line", "Line", "Линия"),
    ("callbacks_per_day", "Callbacks opened and closed per day", "Перезвоны: открыто и закрыто по дням"),
    ("answered", "Answered", "Отвечено"),
    ("missed", "Missed", "Пропущено"),
    ("opened", "Opened", "Открыто"),
    ("closed", "Closed", "Закрыто"),
    ("quarantine", "Quarantined mail", "Карантин почты"),
    ("suppression", "Suppressed addresses", "Подавленные адреса"),
    ("received", "Received", "Получено"),
    ("sender", "Sender", "Отправитель"),
    ("where", "Where", "Где"),
    ("replay", "Process again", "Обработать снова"),
    ("held_message", "Held message", "Задержанное письмо"),
    ("raw_message", "The message as received", "Письмо в том виде, в каком пришло"),
    ("raw_cut", "Shown up to 256 KB of", "Показаны первые 256 КБ из"),
    ("no_raw", "The message's bytes were not kept.", "Байты письма не сохранены."),
    ("back_to_quarantine", "Back to the quarantine", "Назад к карантину"),
    ("replayed", "Processed again:", "Обработано снова:"),
    ("address", "Address", "Адрес"),
    ("since", "Since", "С"),
    ("detail", "Detail", "Подробности"),
    ("nothing_quarantined", "No mail is held.", "Задержанной почты нет."),
    ("nothing_suppressed", "No address is suppressed.", "Подавленных адресов нет."),
];

/// Labels of DOMAIN §2 picklists and states, as `crm::labels` gives them in English.
const LABELS_RU: &[(&str, &str)] = &[
    ("Advertisement", "Реклама"),
    ("Employee Referral", "Рекомендация сотрудника"),
    ("External Referral", "Внешняя рекомендация"),
    ("Partner", "Партнёр"),
    ("Public Relations", "Связи с общественностью"),
    ("Seminar", "Семинар"),
    ("Trade Show", "Выставка"),
    ("Web", "Веб-сайт"),
    ("Word of Mouth", "Сарафанное радио"),
    ("Other", "Другое"),
    ("E-mail", "Эл. почта"),
    ("Phone call", "Телефонный звонок"),
    ("Open", "Открыт"),
    ("Qualified", "Квалифицирован"),
    ("Disqualified", "Дисквалифицирован"),
    ("Completed", "Выполнено"),
    ("Canceled", "Отменено"),
    ("Scheduled", "Запланировано"),
    ("New", "Новый"),
    ("Contacted", "Связались"),
    ("Lost", "Потерян"),
    ("Cannot Contact", "Не удаётся связаться"),
    ("In Progress", "В работе"),
    ("Proposed", "Предложена"),
    ("Ready To Launch", "Готова к запуску"),
    ("Launched", "Запущена"),
    ("Suspended", "Приостановлена"),
    ("Direct Marketing", "Прямой маркетинг"),
    ("Event", "Мероприятие"),
    ("Co-branding", "Совместный брендинг"),
    ("Account", "Организации"),
    ("Contact", "Контакты"),
    ("Lead", "Интересы"),
    ("On Hold", "Отложена"),
    ("Won", "Выиграна"),
    ("Out-Sold", "Уступили конкуренту"),
    ("Qualify", "Квалификация"),
    ("Develop", "Развитие"),
    ("Propose", "Предложение"),
    ("Close", "Закрытие"),
    ("Active", "Активна"),
    ("Inactive", "Неактивна"),
    ("No Longer Interested", "Больше не заинтересован"),
];

/// Record and history kinds as timelines and work lists name them (EntityKind codes and the
/// history kinds of R-DEAL-1).
const KINDS: &[(&str, &str, &str)] = &[
    ("task", "Task", "Задача"),
    ("phonecall", "Phone call", "Звонок"),
    ("email", "E-mail", "Эл. письмо"),
    ("appointment", "Appointment", "Встреча"),
    ("letter", "Letter", "Письмо"),
    ("fax", "Fax", "Факс"),
    ("campaignactivity", "Campaign activity", "Мероприятие кампании"),
    ("lead", "Lead", "Интерес"),
    ("opportunity", "Opportunity", "Возможная сделка"),
    ("contact", "Contact", "Контакт"),
    ("account", "Account", "Организация"),
    ("campaignresponse", "Campaign response", "Отклик на кампанию"),
    ("stage", "Stage", "Стадия"),
    ("won", "Won", "Выиграна"),
    ("lost", "Lost", "Проиграна"),
    ("reopened", "Reopened", "Открыта снова"),
    ("act", "Act", "Акт"),
];

/// A record or history kind in the language (the code itself when unknown).
pub fn kind(lang: Lang, code: &str) -> String {
    KINDS
        .iter()
        .find(|(k, _, _)| *k == code)
        .map(|(_, en, ru)| if lang == Lang::Ru { *ru } else { *en })
        .unwrap_or(code)
        .to_string()
}

/// Why an address is suppressed, as people read it: the stored reason is a code
/// (`unsubscribe`, `smtp_rejected`) or a line that starts with its kind (`bounce: …`,
/// `complaint: …`), whose technical rest (reason, status) is kept as written.
pub fn suppression_reason(lang: Lang, reason: &str) -> String {
    let (en, ru) = match reason {
        "unsubscribe" => ("Unsubscribed", "Отписка"),
        "smtp_rejected" => ("Rejected by the mail relay", "Отклонено почтовым сервером"),
        _ => {
            for (prefix, en, ru) in [("bounce:", "Bounce:", "Возврат:"), ("complaint:", "Complaint:", "Жалоба:")]
            {
                if let Some(rest) = reason.strip_prefix(prefix) {
                    return format!("{}{rest}", if lang == Lang::Ru { ru } else { en });
                }
            }
            return reason.to_string();
        }
    };
    if lang == Lang::Ru { ru } else { en }.to_string()
}

/// Why a list member gets no marketing e-mail (`crm::waves::optout_reasons`: a code, or
/// "kind: detail"), in words.
pub fn optout_reason(lang: Lang, reason: &str) -> String {
    let (code, rest) = match reason.split_once(": ") {
        Some((c, r)) => (c, Some(r)),
        None => (reason, None),
    };
    use crate::crm::waves::{REASON_INACTIVE, REASON_NO_EMAIL, REASON_OPTED_OUT, REASON_SUPPRESSED};
    let word = match (code, rest) {
        (REASON_OPTED_OUT, Some("donotemail")) => ("does not want e-mail", "не хочет получать письма"),
        (REASON_OPTED_OUT, Some("donotbulkemail")) => ("does not want bulk e-mail", "не хочет получать рассылки"),
        (REASON_OPTED_OUT, Some("donotsendmm")) => {
            ("does not want marketing materials", "не хочет получать маркетинговые материалы")
        }
        (REASON_SUPPRESSED, _) => ("the address is suppressed", "адрес подавлен"),
        (REASON_INACTIVE, _) => ("inactive", "неактивен"),
        (REASON_NO_EMAIL, _) => ("no valid e-mail address", "нет действующего адреса эл. почты"),
        _ => return reason.to_string(),
    };
    let w = if lang == Lang::Ru { word.1 } else { word.0 };
    match (code, rest) {
        (REASON_SUPPRESSED, Some(a)) => format!("{w}: {a}"),
        _ => w.to_string(),
    }
}

/// Every word of a language, for a template's `tr`.
pub fn words(lang: Lang) -> BTreeMap<&'static str, &'static str> {
    WORDS.iter().map(|(k, en, ru)| (*k, if lang == Lang::Ru { *ru } else { *en })).collect()
}

/// One word.
pub fn t(lang: Lang, key: &str) -> &'static str {
    WORDS.iter().find(|(k, _, _)| *k == key).map(|(_, en, ru)| if lang == Lang::Ru { *ru } else { *en }).unwrap_or("?")
}

/// A picklist or state label in the language (English labels are the source).
pub fn label(lang: Lang, english: &str) -> String {
    if lang == Lang::Ru {
        if let Some((_, ru)) = LABELS_RU.iter().find(|(en, _)| *en == english) {
            return (*ru).to_string();
        }
    }
    english.to_string()
}

/// An instant as people of the language read it, in the org time zone.
pub fn datetime(lang: Lang, t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    match lang {
        Lang::Ru => local.format("%d.%m.%Y %H:%M").to_string(),
        Lang::En => local.format("%Y-%m-%d %H:%M").to_string(),
    }
}

/// A date in full, as the language writes it.
pub fn date(lang: Lang, d: chrono::NaiveDate) -> String {
    match lang {
        Lang::Ru => d.format("%d.%m.%Y").to_string(),
        Lang::En => d.format("%Y-%m-%d").to_string(),
    }
}

/// A day (chart axis) as the language writes it.
pub fn day(lang: Lang, d: chrono::NaiveDate) -> String {
    match lang {
        Lang::Ru => d.format("%d.%m").to_string(),
        Lang::En => d.format("%m-%d").to_string(),
    }
}

/// An amount in a currency: `1 234 567,50 ₽` in Russian, `RUB 1,234,567.50` in English.
pub fn money(lang: Lang, amount: f64, currency: &str) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (neg, cents) = (cents < 0, cents.unsigned_abs());
    let (whole, frac) = (cents / 100, cents % 100);
    let digits = whole.to_string();
    let sep = if lang == Lang::Ru { '\u{a0}' } else { ',' };
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(sep);
        }
        grouped.push(ch);
    }
    let sign = if neg { "−" } else { "" };
    match lang {
        Lang::Ru => {
            let symbol = match currency {
                "RUB" => "₽",
                "UAH" => "₴",
                "EUR" => "€",
                "USD" => "$",
                other => other,
            };
            format!("{sign}{grouped},{frac:02}\u{a0}{symbol}")
        }
        Lang::En => format!("{sign}{currency} {grouped}.{frac:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_has_both_languages() {
        for (k, en, ru) in WORDS {
            assert!(!en.is_empty() && !ru.is_empty(), "{k}");
        }
        let mut keys: Vec<_> = WORDS.iter().map(|w| w.0).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), WORDS.len(), "a key is listed twice");
    }

    #[test]
    fn money_reads_as_each_language_writes_it() {
        assert_eq!(money(Lang::Ru, 1_234_567.5, "RUB"), "1\u{a0}234\u{a0}567,50\u{a0}₽");
        assert_eq!(money(Lang::En, 1_234_567.5, "RUB"), "RUB 1,234,567.50");
        assert_eq!(money(Lang::En, -12.0, "EUR"), "−EUR 12.00");
        assert_eq!(money(Lang::Ru, 999.0, "UAH"), "999,00\u{a0}₴");
    }

    #[test]
    fn dates_are_in_the_org_zone() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T22:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(datetime(Lang::Ru, t, chrono_tz::Europe::Moscow), "07.12.2026 01:30");
        assert_eq!(datetime(Lang::En, t, chrono_tz::Europe::Moscow), "2026-12-07 01:30");
        assert_eq!(label(Lang::Ru, "Trade Show"), "Выставка");
        assert_eq!(label(Lang::En, "Trade Show"), "Trade Show");
        assert_eq!(Lang::parse("RU"), Some(Lang::Ru));
        assert_eq!(suppression_reason(Lang::Ru, "bounce: hard, userunknown 5.1.1"), "Возврат: hard, userunknown 5.1.1");
        assert_eq!(suppression_reason(Lang::En, "unsubscribe"), "Unsubscribed");
        assert_eq!(suppression_reason(Lang::En, "something new"), "something new");
        assert_eq!(optout_reason(Lang::Ru, "opted_out: donotbulkemail"), "не хочет получать рассылки");
        assert_eq!(optout_reason(Lang::En, "suppressed: a@b.ru"), "the address is suppressed: a@b.ru");
    }
}
